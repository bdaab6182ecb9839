//! UDP sockets with batched recvmmsg/sendmmsg: the portable backend (being written).
