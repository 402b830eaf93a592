/** Constants of drivers/misc/mic/scif/scif_main.h the card node shares with the host. */

/** SCIF_MGMT_NODE: the host. */
export const SCIF_MGMT_NODE = 0;
/** SCIF_NODE_ALIVE_TIMEOUT: 30 s (EXIT_ACK, DISCNT_ACK, CNCT_GNT/REJ waits). */
export const SCIF_NODE_ALIVE_TIMEOUT_MS = 30_000;
/** SCIF_NODE_ACCEPT_TIMEOUT: accept waits for GNTACK in 3 s slices while the node lives. */
export const SCIF_NODE_ACCEPT_TIMEOUT_MS = 3000;
/** scif_qp_setup_handler() re-polls the device page every second. */
export const QP_POLL_MS = 1000;
