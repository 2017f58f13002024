package stream

import (
	"net"
	"syscall"
)

const (
	errEMFILE = syscall.EMFILE
	errENFILE = syscall.ENFILE
)

func netResolve(addr string) (*net.TCPAddr, error) { return net.ResolveTCPAddr("tcp", addr) }
