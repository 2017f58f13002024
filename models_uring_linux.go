package switchboard

import "switchboard/internal/uringengine"

// The io_uring model registers on every Linux build; whether the kernel
// lets this process use io_uring is asked by NewServer (CheckModel), so
// `--model uring` fails before listening, with the reason, and "auto"
// never picks it (LookupModel's preference stops at epoll).
func init() {
	registerChecked(ModelInfo{Name: ModelUring, EventLoop: true, TLS: true}, uringengine.New, uringengine.Check)
}
