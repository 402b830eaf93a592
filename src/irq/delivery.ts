/**
 * Interrupt delivery to the client: MSI-X vectors and INTx, with the
 * pending-bit semantics of a real function.
 *
 * QEMU hands a vector's eventfd over only when the guest unmasks that
 * vector (hw/vfio/pci.c vfio_msix_vector_do_use). Until then, and while a vector is masked (by the function mask,
 * a vector mask reported through the irq-state callback, or MSI-X being
 * disabled), a raised interrupt stays pending here (our PBA) and is
 * delivered when it becomes deliverable: never dropped, never an error.
 *
 * INTx is level-triggered: the device reports its level; QEMU masks the
 * line after each trigger (vfio_intx_interrupt) and unmasks it after the
 * guest's EOI (vfio_intx_eoi), at which
 * point a level that is still high is signalled again.
 */
import { IRQ_TYPE, type NativeContext } from '../binding/types.ts';
import { type Tracer, NULL_TRACER } from '../trace/tracer.ts';

/** MSI-X Message Control bits (config space, capability offset + 2). */
const MSIX_CTRL_ENABLE = 0x8000;
const MSIX_CTRL_FUNCTION_MASK = 0x4000;

export type IrqMode = 'msix' | 'intx' | 'none';

export type IrqPort = Pick<NativeContext, 'trigger' | 'readConfig'>;

export class InterruptDelivery {
  /** Pending bit per MSI-X vector (our PBA). */
  readonly pending: Uint8Array;
  /** Vector masks reported by the client (irq-state callback). */
  private readonly masked: Uint8Array;
  private intxLevel = false;
  /** INTx was signalled and QEMU has not unmasked it yet. */
  private intxMasked = false;
  private intxMaskedByClient = false;

  constructor(
    private readonly port: IrqPort,
    readonly vectors: number,
    /** Config-space offset of the MSI-X capability (0: none). */
    private readonly msixCap: number,
    private readonly tracer: Tracer = NULL_TRACER,
  ) {
    this.pending = new Uint8Array(vectors);
    this.masked = new Uint8Array(vectors);
  }

  /** Which interrupt the guest has enabled: MSI-X when its enable bit is set, else INTx. */
  mode(): IrqMode {
    if (this.msixCap && this.port.readConfig(this.msixCap + 2, 2) & MSIX_CTRL_ENABLE) return 'msix';
    return 'intx';
  }

  private functionMasked(): boolean {
    return this.msixCap !== 0 && (this.port.readConfig(this.msixCap + 2, 2) & MSIX_CTRL_FUNCTION_MASK) !== 0;
  }

  /** Raise MSI-X vector `v` once (one message per event). `src` names the cause for the trace. */
  raise(v: number, src?: string): void {
    if (v < 0 || v >= this.vectors) return;
    if (this.tracer.enabled) this.tracer.irq({ mode: 'msix', vector: v, action: 'raise', src });
    this.pending[v] = 1;
    this.deliver(v, src);
  }

  private deliver(v: number, src?: string): boolean {
    if (this.masked[v] || this.mode() !== 'msix' || this.functionMasked() || !this.port.trigger(IRQ_TYPE.MSIX, v)) {
      if (this.tracer.enabled) this.tracer.irq({ mode: 'msix', vector: v, action: 'pending', src });
      return false;
    }
    this.pending[v] = 0;
    if (this.tracer.enabled) this.tracer.irq({ mode: 'msix', vector: v, action: 'deliver', src });
    return true;
  }

  /** Try every pending vector again (after client messages, unmasks, enable changes). */
  retry(): void {
    for (let v = 0; v < this.vectors; v++) if (this.pending[v]) this.deliver(v);
    if (this.intxLevel && !this.intxMasked) this.signalIntx();
  }

  /** A vector's (or INTx's) mask changed on the client side. */
  onIrqState(type: number, start: number, count: number, masked: boolean): void {
    if (type === IRQ_TYPE.MSIX) {
      for (let v = start; v < start + count && v < this.vectors; v++) {
        this.masked[v] = masked ? 1 : 0;
        if (this.tracer.enabled) this.tracer.irq({ mode: 'msix', vector: v, action: masked ? 'mask' : 'unmask' });
      }
    } else if (type === IRQ_TYPE.INTX) {
      this.intxMaskedByClient = masked;
      if (!masked) this.intxMasked = false;
      if (this.tracer.enabled) this.tracer.irq({ mode: 'intx', vector: 0, action: masked ? 'mask' : 'unmask' });
    }
    this.retry();
  }

  /** The device's INTx level (level-triggered, like INTA#). */
  setIntxLevel(level: boolean): void {
    if (level === this.intxLevel) return;
    this.intxLevel = level;
    if (this.tracer.enabled) this.tracer.irq({ mode: 'intx', vector: 0, action: 'level', level });
    // Every rising edge is signalled; a level still high when the client
    // unmasks INTx after the guest's EOI is signalled again (retry()).
    if (level) this.signalIntx();
  }

  get intx(): boolean {
    return this.intxLevel;
  }

  private signalIntx(): void {
    if (this.intxMaskedByClient || this.mode() !== 'intx') return;
    if (this.port.trigger(IRQ_TYPE.INTX, 0)) {
      this.intxMasked = true;
      if (this.tracer.enabled) this.tracer.irq({ mode: 'intx', vector: 0, action: 'deliver' });
    }
  }

  /** Forget everything (device reset, client gone). */
  reset(): void {
    this.pending.fill(0);
    this.masked.fill(0);
    this.intxLevel = false;
    this.intxMasked = false;
    this.intxMaskedByClient = false;
  }
}
