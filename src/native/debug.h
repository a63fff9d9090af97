/* Invariant checks that cost nothing in release builds (after py-pgproto's debug.h).
 * setup.py defines UNMO_DEBUG=1 for `make debug` / UNMO_DEBUG=1 builds. */
#ifndef UNMO_DEBUG
#define UNMO_DEBUG 0
#endif
