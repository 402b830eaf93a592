import { describe, expect, it } from 'vitest';
import { InterruptDelivery } from './delivery.ts';
import { MOCK_MSIX_CAP, MockContext } from '../binding/mock.ts';
import { quietCallbacks, testOptions } from '../binding/raw-client.ts';
import { IRQ_TYPE } from '../binding/types.ts';
import { memoryTracer } from '../trace/tracer.ts';

const CAP = MOCK_MSIX_CAP;

/** A mock context with its client attached and INTx's eventfd handed over, as QEMU does at realize. */
function port() {
  const m = new MockContext(testOptions('irq-test'), quietCallbacks());
  m.connect();
  m.giveEventfd(0);
  return Object.assign(m, {
    fds: m.eventfds,
    fired: m.triggered,
    msix: (enable: boolean, fmask = false) => m.enableMsix(enable, fmask),
  });
}

describe('MSI-X delivery', () => {
  it('delivers one message per raise when the vector has an eventfd', () => {
    const p = port();
    p.msix(true);
    p.fds.add(0);
    const d = new InterruptDelivery(p, 16, CAP);
    d.raise(0);
    d.raise(0);
    expect(p.fired).toEqual([[IRQ_TYPE.MSIX, 0], [IRQ_TYPE.MSIX, 0]]);
  });

  it('keeps a vector without an eventfd pending and delivers it once the fd arrives', () => {
    const p = port();
    p.msix(true);
    const t = memoryTracer();
    const d = new InterruptDelivery(p, 16, CAP, t);
    d.raise(4, 'DB0');
    expect(d.pending[4]).toBe(1);
    d.retry();
    expect(p.fired).toEqual([]);
    p.fds.add(4);
    d.retry();
    expect(p.fired).toEqual([[IRQ_TYPE.MSIX, 4]]);
    expect(d.pending[4]).toBe(0);
    expect(t.events.map((e) => e.action)).toEqual(['raise', 'pending', 'pending', 'deliver']);
  });

  it('holds interrupts while the function mask is set or MSI-X is disabled', () => {
    const p = port();
    p.fds.add(1);
    p.msix(true, true);
    const d = new InterruptDelivery(p, 16, CAP);
    d.raise(1);
    p.msix(false);
    d.retry();
    expect(p.fired).toEqual([]);
    p.msix(true);
    d.retry();
    expect(p.fired).toEqual([[IRQ_TYPE.MSIX, 1]]);
  });

  it('honours per-vector masks reported by the client and delivers on unmask', () => {
    const p = port();
    p.msix(true);
    p.fds.add(2);
    const d = new InterruptDelivery(p, 16, CAP);
    d.onIrqState(IRQ_TYPE.MSIX, 2, 1, true);
    d.raise(2);
    expect(p.fired).toEqual([]);
    d.onIrqState(IRQ_TYPE.MSIX, 2, 1, false);
    expect(p.fired).toEqual([[IRQ_TYPE.MSIX, 2]]);
  });

  it('ignores vectors outside the table', () => {
    const p = port();
    p.msix(true);
    const d = new InterruptDelivery(p, 16, CAP);
    d.raise(16);
    d.raise(-1);
    expect([...d.pending].every((x) => x === 0)).toBe(true);
  });
});

describe('INTx delivery', () => {
  it('signals a rising level and again on unmask while the level stays high', () => {
    const p = port();
    const d = new InterruptDelivery(p, 16, CAP);
    expect(d.mode()).toBe('intx');
    d.setIntxLevel(true);
    expect(p.fired).toEqual([[IRQ_TYPE.INTX, 0]]);
    d.setIntxLevel(true); // no edge
    expect(p.fired.length).toBe(1);
    d.onIrqState(IRQ_TYPE.INTX, 0, 1, false); // EOI: still high
    expect(p.fired.length).toBe(2);
    d.setIntxLevel(false);
    d.onIrqState(IRQ_TYPE.INTX, 0, 1, false);
    expect(p.fired.length).toBe(2);
  });

  it('does not signal INTx while MSI-X is enabled', () => {
    const p = port();
    p.msix(true);
    const d = new InterruptDelivery(p, 16, CAP);
    d.setIntxLevel(true);
    expect(p.fired).toEqual([]);
  });
});
