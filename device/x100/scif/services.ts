/**
 * Card services (the card OS's SCIF clients: COSM, test peers, a user's
 * --service): started with the node's ScifApi when node 0 becomes a live
 * peer, stopped when it goes (exit, card reset, PCI reset). A service that
 * throws is traced and does not take the node down.
 */
import type { CardService } from './api.ts';
import type { NodeState, ScifNode } from './node.ts';

export class ServiceRunner {
  private running = false;

  constructor(
    private readonly node: ScifNode,
    private readonly services: readonly CardService[],
  ) {
    node.onState((state) => this.onState(state));
  }

  get started(): boolean {
    return this.running;
  }

  private onState(state: NodeState): void {
    if (state === 'online' && !this.running) {
      this.running = true;
      for (const s of this.services) this.guard(s, 'start', () => s.start(this.node.api));
    } else if (state !== 'online' && this.running) {
      this.running = false;
      for (const s of this.services) this.guard(s, 'stop', () => s.stop());
    }
  }

  private guard(s: CardService, what: string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.node.trace({ action: 'service', service: s.name, what, error: (e as Error).message });
    }
  }
}
