// Package uring is raw io_uring for a TCP engine, through system calls
// only: a ring with its submission and completion queues mapped from the
// kernel, SQE preparation for the handful of operations an echo or
// request/response server needs, one io_uring_enter per loop iteration to
// submit and wait, a provided-buffer ring, an off-heap arena for sendmsg
// gather lists, eventfd and MSG_RING wake-ups, and a probe that says
// plainly why io_uring cannot be used when it cannot.
//
// It is Linux-only; elsewhere the package is empty.
//
// # The life of a message through the buffer ring
//
// A connection that is accepted (one multishot accept posts a completion
// per connection) gets one multishot receive armed with IOSQE_BUFFER_SELECT
// and a buffer group, and nothing else: no buffer is tied to it. Its
// memory cost while idle is the kernel's socket and one armed request.
//
// When bytes arrive, the kernel takes the buffer at the head of the group's
// ring, copies the bytes in, and posts a completion whose flags carry
// IORING_CQE_F_BUFFER and the buffer's id (and, with a bundle, the first of
// several consecutive ring slots it filled). IORING_CQE_F_MORE says the
// receive is still armed. The loop reaps the completion, looks the buffer
// up (BufRing.Bundle), and hands the bytes to the framing layer.
//
// From then on the buffer is the loop's. An echo can send straight from it
// (the buffer is outside the Go heap, so the kernel may read it until the
// send completes); a framing layer copies out what it keeps. Either way the
// loop recycles the id (BufRing.Recycle) when it is done, and one
// BufRing.Publish per loop iteration returns all recycled buffers to the
// kernel with a single store of the ring's tail.
//
// If every buffer is out, the next receive on any connection completes
// with -ENOBUFS and without F_MORE: that receive has ended. The loop
// recycles, publishes, and arms it again; the data waited in the socket.
// A receive of 0 bytes is the peer's end of stream, and ends the receive.
//
// # Threads
//
// A Ring is used by the OS thread that created it (runtime.LockOSThread):
// SINGLE_ISSUER rejects other submitters, DEFER_TASKRUN runs completion
// work only when that thread waits, and the registered ring descriptor is
// an index into that thread's table. Other goroutines reach the loop only
// through Eventfd.Wake or WakeRing.
package uring
