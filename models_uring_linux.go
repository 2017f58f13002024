package switchboard

import "switchboard/internal/uringengine"

// The io_uring model registers on every Linux build; whether the kernel
// lets this process use io_uring is asked when a server is built, so
// `--model uring` fails then with the reason, and "auto" never picks it
// (LookupModel's preference list stops at epoll).
func init() {
	registerModel(ModelInfo{Name: ModelUring, EventLoop: true}, uringengine.New)
}
