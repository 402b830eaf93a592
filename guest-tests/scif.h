/*
 * scif.h: the /dev/scif user API, mirrored from Linux's
 * include/uapi/linux/scif_ioctl.h (ioctl numbers and argument layouts) and
 * include/linux/scif.h (flag values), so that guest programs build without
 * kernel headers. Identical in Linux 4.9 and 5.8. The ioctls are handled by
 * scif_fdioctl() (drivers/misc/mic/scif/scif_fd.c).
 */
#ifndef VPHI_SCIF_H
#define VPHI_SCIF_H

#include <stdint.h>
#include <sys/ioctl.h>

struct scif_port_id {
	uint16_t node;
	uint16_t port;
};

struct scifioctl_connect {
	struct scif_port_id self; /* out */
	struct scif_port_id peer; /* in */
};

struct scifioctl_accept {
	int32_t flags;            /* SCIF_ACCEPT_SYNC */
	struct scif_port_id peer; /* out */
	uint64_t endpt;           /* out: the handle SCIF_ACCEPTREG takes */
};

struct scifioctl_msg {
	uint64_t msg; /* buffer address */
	int32_t len;
	int32_t flags;   /* SCIF_SEND_BLOCK / SCIF_RECV_BLOCK, or 0 */
	int32_t out_len; /* out: bytes sent or received */
};

struct scifioctl_reg {
	uint64_t addr;
	uint64_t len;
	int64_t offset;
	int32_t prot;
	int32_t flags;
	int64_t out_offset;
};

struct scifioctl_unreg {
	int64_t offset;
	uint64_t len;
};

struct scifioctl_copy {
	int64_t loffset;
	uint64_t len;
	int64_t roffset;
	uint64_t addr;
	int32_t flags;
};

struct scifioctl_fence_mark {
	int32_t flags;
	uint64_t mark; /* address of an int that receives the mark */
};

struct scifioctl_fence_signal {
	int64_t loff;
	uint64_t lval;
	int64_t roff;
	uint64_t rval;
	int32_t flags;
};

struct scifioctl_node_ids {
	uint64_t nodes; /* address of a uint16_t array */
	uint64_t self;  /* address of one uint16_t */
	int32_t len;    /* in: array entries; out: nodes online */
};

/* SCIF_BIND copies an int in and out (scif_fdioctl()), whatever the size field says. */
#define SCIF_BIND _IOWR('s', 1, uint64_t)
/* SCIF_LISTEN and SCIF_FENCE_WAIT take the value itself as the argument. */
#define SCIF_LISTEN _IOW('s', 2, int32_t)
#define SCIF_CONNECT _IOWR('s', 3, struct scifioctl_connect)
#define SCIF_ACCEPTREQ _IOWR('s', 4, struct scifioctl_accept)
#define SCIF_ACCEPTREG _IOWR('s', 5, uint64_t)
#define SCIF_SEND _IOWR('s', 6, struct scifioctl_msg)
#define SCIF_RECV _IOWR('s', 7, struct scifioctl_msg)
#define SCIF_REG _IOWR('s', 8, struct scifioctl_reg)
#define SCIF_UNREG _IOWR('s', 9, struct scifioctl_unreg)
#define SCIF_READFROM _IOWR('s', 10, struct scifioctl_copy)
#define SCIF_WRITETO _IOWR('s', 11, struct scifioctl_copy)
#define SCIF_VREADFROM _IOWR('s', 12, struct scifioctl_copy)
#define SCIF_VWRITETO _IOWR('s', 13, struct scifioctl_copy)
#define SCIF_GET_NODEIDS _IOWR('s', 14, struct scifioctl_node_ids)
#define SCIF_FENCE_MARK _IOWR('s', 15, struct scifioctl_fence_mark)
#define SCIF_FENCE_WAIT _IOWR('s', 16, int32_t)
#define SCIF_FENCE_SIGNAL _IOWR('s', 17, struct scifioctl_fence_signal)

/* include/linux/scif.h */
#define SCIF_ACCEPT_SYNC 1
#define SCIF_SEND_BLOCK 1
#define SCIF_RECV_BLOCK 1
#define SCIF_PROT_READ 0x1
#define SCIF_PROT_WRITE 0x2
#define SCIF_MAP_FIXED 0x10
#define SCIF_MAP_KERNEL 0x20
#define SCIF_FENCE_INIT_SELF 0x1
#define SCIF_FENCE_INIT_PEER 0x2
#define SCIF_SIGNAL_LOCAL 0x10
#define SCIF_SIGNAL_REMOTE 0x20
#define SCIF_RMA_USECPU 0x1
#define SCIF_RMA_USECACHE 0x2
#define SCIF_RMA_SYNC 0x4
#define SCIF_RMA_ORDERED 0x8
#define SCIF_ADMIN_PORT_END 1024
#define SCIF_PORT_RSVD 1088

/* The size checks gcc did for scif-protocol's table (x86_64). */
_Static_assert(sizeof(struct scifioctl_connect) == 8, "scifioctl_connect");
_Static_assert(sizeof(struct scifioctl_accept) == 16, "scifioctl_accept");
_Static_assert(sizeof(struct scifioctl_msg) == 24, "scifioctl_msg");
_Static_assert(sizeof(struct scifioctl_reg) == 40, "scifioctl_reg");
_Static_assert(sizeof(struct scifioctl_unreg) == 16, "scifioctl_unreg");
_Static_assert(sizeof(struct scifioctl_copy) == 40, "scifioctl_copy");
_Static_assert(sizeof(struct scifioctl_fence_mark) == 16, "scifioctl_fence_mark");
_Static_assert(sizeof(struct scifioctl_fence_signal) == 40, "scifioctl_fence_signal");
_Static_assert(sizeof(struct scifioctl_node_ids) == 24, "scifioctl_node_ids");

/* The numbers as x86_64 Linux computes them. */
_Static_assert(SCIF_BIND == 0xC0087301u, "SCIF_BIND");
_Static_assert(SCIF_LISTEN == 0x40047302u, "SCIF_LISTEN");
_Static_assert(SCIF_CONNECT == 0xC0087303u, "SCIF_CONNECT");
_Static_assert(SCIF_ACCEPTREQ == 0xC0107304u, "SCIF_ACCEPTREQ");
_Static_assert(SCIF_ACCEPTREG == 0xC0087305u, "SCIF_ACCEPTREG");
_Static_assert(SCIF_SEND == 0xC0187306u, "SCIF_SEND");
_Static_assert(SCIF_RECV == 0xC0187307u, "SCIF_RECV");
_Static_assert(SCIF_REG == 0xC0287308u, "SCIF_REG");
_Static_assert(SCIF_UNREG == 0xC0107309u, "SCIF_UNREG");
_Static_assert(SCIF_READFROM == 0xC028730Au, "SCIF_READFROM");
_Static_assert(SCIF_WRITETO == 0xC028730Bu, "SCIF_WRITETO");
_Static_assert(SCIF_VREADFROM == 0xC028730Cu, "SCIF_VREADFROM");
_Static_assert(SCIF_VWRITETO == 0xC028730Du, "SCIF_VWRITETO");
_Static_assert(SCIF_GET_NODEIDS == 0xC018730Eu, "SCIF_GET_NODEIDS");
_Static_assert(SCIF_FENCE_MARK == 0xC010730Fu, "SCIF_FENCE_MARK");
_Static_assert(SCIF_FENCE_WAIT == 0xC0047310u, "SCIF_FENCE_WAIT");
_Static_assert(SCIF_FENCE_SIGNAL == 0xC0287311u, "SCIF_FENCE_SIGNAL");

#endif /* VPHI_SCIF_H */
