"""Error numbers (include/uapi/asm-generic/errno-base.h); returned negated, as the kernel does."""

ENOMEM = 12
EFAULT = 14
EINVAL = 22
