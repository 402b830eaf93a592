/**
 * A KTAP (Documentation/dev-tools/ktap.rst) parser for serial console lines.
 *
 * Lines that are not KTAP (kernel messages, program chatter) are ignored and
 * do not affect nesting. A document starts at a `KTAP version N` (or
 * `TAP version N`) line, or at a bare plan `1..N`. Subtests are indented
 * deeper than their parent (any amount; KUnit uses 4 spaces); a subtest's
 * document is attached to the next result line at the parent's level.
 * `# Subtest: NAME` names the next subtest, at either level.
 */

export interface KtapResult {
  number: number;
  /** The description, a leading `- ` removed. */
  name: string;
  ok: boolean;
  /** `SKIP`, `TODO`, `XFAIL`, ... (upper case), when the line has a directive. */
  directive?: string;
  /** Text after the directive, or after a `#` that is not a directive. */
  reason?: string;
  /** `ok` with a SKIP directive. */
  skipped: boolean;
  /** Diagnostic lines (text after `# `) between the previous result and this one, at this level. */
  diagnostics: string[];
  /** The nested document this result closes, if any. */
  subtests?: KtapDocument;
  /** The raw line. */
  line: string;
}

export interface KtapDocument {
  /** From `KTAP version N`; `TAP version 13` gives 13; null when absent. */
  version: number | null;
  /** N of the `1..N` plan; null when absent. */
  plan: number | null;
  /** From `# Subtest: NAME`. */
  name?: string;
  results: KtapResult[];
  /** Every diagnostic line at this level, in order (text after `# `). */
  diagnostics: string[];
  /** Structural problems: plan mismatch, numbering, unterminated subtests. */
  errors: string[];
}

export interface KtapSummary {
  total: number;
  passed: number;
  failed: number;
  skipped: number;
  /** Plan minus results seen (never negative). */
  missing: number;
  /** No failures, nothing missing, no structural errors, recursively. */
  ok: boolean;
}

type Line =
  | { kind: 'version'; version: number }
  | { kind: 'plan'; plan: number; rest: string }
  | { kind: 'result'; result: KtapResult }
  | { kind: 'subtest'; name: string }
  | { kind: 'diag'; text: string };

const VERSION_RE = /^K?TAP version (\d+)\s*$/;
const PLAN_RE = /^1\.\.(\d+)\s*(?:#\s*(.*))?$/;
const RESULT_RE = /^(not ok|ok)\s+(\d+)\b\s*(.*)$/;
const DIRECTIVE_RE = /^(SKIP|TODO|XFAIL|TIMEOUT|ERROR)\b\s*(.*)$/i;

/** Classify one line's content (indentation already removed). */
function classify(content: string): Line | null {
  let m = content.match(VERSION_RE);
  if (m) return { kind: 'version', version: Number(m[1]) };
  m = content.match(PLAN_RE);
  if (m) return { kind: 'plan', plan: Number(m[1]), rest: m[2] ?? '' };
  m = content.match(RESULT_RE);
  if (m) {
    let desc = m[3];
    let directive: string | undefined;
    let reason: string | undefined;
    const hash = desc.search(/(^|\s)#/);
    if (hash >= 0) {
      const after = desc.slice(desc.indexOf('#', hash) + 1).trim();
      desc = desc.slice(0, hash);
      const d = after.match(DIRECTIVE_RE);
      if (d) {
        directive = d[1].toUpperCase();
        if (d[2]) reason = d[2];
      } else if (after) reason = after;
    }
    const name = desc.trim().replace(/^-\s*/, '');
    const ok = m[1] === 'ok';
    const result: KtapResult = { number: Number(m[2]), name, ok, skipped: ok && directive === 'SKIP', diagnostics: [], line: content };
    if (directive !== undefined) result.directive = directive;
    if (reason !== undefined) result.reason = reason;
    return { kind: 'result', result };
  }
  if (content.startsWith('#')) {
    const text = content.replace(/^#\s?/, '');
    const s = text.match(/^Subtest:\s*(.*)$/);
    if (s) return { kind: 'subtest', name: s[1].trim() };
    return { kind: 'diag', text };
  }
  return null;
}

interface Frame {
  indent: number;
  doc: KtapDocument;
  /** Diagnostics since the last result. */
  pending: string[];
  /** A finished nested document waiting for its result line. */
  child?: KtapDocument;
  /** A `# Subtest:` name seen at this level for the next child. */
  childName?: string;
}

function newDoc(): KtapDocument {
  return { version: null, plan: null, results: [], diagnostics: [], errors: [] };
}

function finishDoc(doc: KtapDocument): void {
  if (doc.plan !== null && doc.results.length !== doc.plan) {
    doc.errors.push(`plan 1..${doc.plan} but ${doc.results.length} result(s)`);
  }
}

/** Every top-level KTAP document in `lines`, in order. */
export function parseKtapDocuments(lines: readonly string[]): KtapDocument[] {
  const docs: KtapDocument[] = [];
  const stack: Frame[] = [];

  const popTo = (indent: number) => {
    // Close frames deeper than `indent`; a closed child waits for its parent's result.
    while (stack.length > 1 && stack[stack.length - 1].indent > indent) {
      const f = stack.pop()!;
      finishDoc(f.doc);
      const parent = stack[stack.length - 1];
      if (parent.child) parent.child.errors.push('subtest without a result line');
      parent.child = f.doc;
    }
  };
  const closeAll = () => {
    popTo(-1);
    if (stack.length) {
      const root = stack.pop()!;
      if (root.child) root.doc.errors.push(`subtest ${root.child.name ?? ''} without a result line`.replace('  ', ' '));
      finishDoc(root.doc);
    }
  };
  const startRoot = (indent: number) => {
    closeAll();
    const doc = newDoc();
    docs.push(doc);
    stack.push({ indent, doc, pending: [] });
  };

  for (const raw of lines) {
    const line = raw.replace(/\r/g, '').replace(/\s+$/, '');
    const content = line.replace(/^\s+/, '');
    const indent = line.length - content.length;
    const c = classify(content);
    if (!c) continue;

    if (!stack.length || indent < stack[0].indent) {
      // Outside any document: only a version line or a plan starts one.
      if (c.kind !== 'version' && c.kind !== 'plan') continue;
      startRoot(indent);
    } else if (c.kind === 'version' && indent === stack[0].indent && stack.length === 1 && (stack[0].doc.version !== null || stack[0].doc.results.length)) {
      startRoot(indent); // a second document
    }

    popTo(indent);
    let top = stack[stack.length - 1];
    if (indent > top.indent) {
      const doc = newDoc();
      if (top.childName !== undefined) {
        doc.name = top.childName;
        top.childName = undefined;
      }
      if (top.child) {
        top.doc.errors.push(`subtest ${top.child.name ?? ''} without a result line`.replace('  ', ' '));
        top.child = undefined;
      }
      stack.push({ indent, doc, pending: [] });
      top = stack[stack.length - 1];
    }
    const doc = top.doc;

    switch (c.kind) {
      case 'version':
        if (doc.version !== null || doc.results.length) doc.errors.push('repeated version line');
        doc.version = c.version;
        break;
      case 'plan':
        if (doc.plan !== null) doc.errors.push('repeated plan');
        doc.plan = c.plan;
        if (c.plan === 0 && /^skip/i.test(c.rest)) doc.diagnostics.push(c.rest);
        break;
      case 'subtest':
        // At the child's own level (KUnit) it names this document, at the parent's the next child.
        if (stack.length > 1 && doc.results.length === 0 && doc.name === undefined) doc.name = c.name;
        else top.childName = c.name;
        break;
      case 'diag':
        doc.diagnostics.push(c.text);
        top.pending.push(c.text);
        break;
      case 'result': {
        const r = c.result;
        r.diagnostics = top.pending;
        top.pending = [];
        if (top.child) {
          r.subtests = top.child;
          if (top.child.name === undefined) top.child.name = r.name;
          top.child = undefined;
        }
        top.childName = undefined;
        const expected = doc.results.length + 1;
        if (r.number !== expected) doc.errors.push(`result ${r.number} out of order (expected ${expected})`);
        doc.results.push(r);
        break;
      }
    }
  }
  closeAll();
  return docs;
}

/** The first KTAP document in `lines` (an empty one when there is none). */
export function parseKtap(lines: readonly string[]): KtapDocument {
  const docs = parseKtapDocuments(lines);
  if (docs.length) return docs[0];
  const doc = newDoc();
  doc.errors.push('no KTAP output');
  return doc;
}

/** Counts for one level, `ok` recursively. */
export function summarize(doc: KtapDocument): KtapSummary {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  let nestedOk = true;
  for (const r of doc.results) {
    if (r.skipped) skipped++;
    else if (r.ok) passed++;
    else failed++;
    if (r.subtests && r.ok && !r.skipped && !summarize(r.subtests).ok) nestedOk = false;
  }
  const total = doc.results.length;
  const missing = Math.max(0, (doc.plan ?? total) - total);
  return { total, passed, failed, skipped, missing, ok: failed === 0 && missing === 0 && doc.errors.length === 0 && nestedOk && (doc.plan !== null || total > 0) };
}

/** Every result, depth first, with its path of names from the top. */
export function flattenResults(doc: KtapDocument, prefix: string[] = []): { path: string[]; result: KtapResult }[] {
  const out: { path: string[]; result: KtapResult }[] = [];
  for (const r of doc.results) {
    const path = [...prefix, r.name];
    if (r.subtests) out.push(...flattenResults(r.subtests, path));
    out.push({ path, result: r });
  }
  return out;
}

/** The result at `path` (names from the top; a subtest's name may also be its first word). */
export function findResult(doc: KtapDocument, ...path: string[]): KtapResult | undefined {
  let d: KtapDocument | undefined = doc;
  let r: KtapResult | undefined;
  for (const name of path) {
    if (!d) return undefined;
    r = d.results.find((x) => x.name === name) ?? d.results.find((x) => x.name.split(/\s+/)[0] === name);
    if (!r) return undefined;
    d = r.subtests;
  }
  return r;
}
