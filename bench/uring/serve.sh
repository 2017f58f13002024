# Sourced by the scripts beside it: start_server SB SERVER PORT ERRFILE
# starts "switchboard serve" on CPU 0 with one loop for SERVER (a model
# name, or uring:OPTS with OPTS for SWITCHBOARD_URING_OPTS) on 127.0.0.1:PORT,
# sets pid, and waits (5 s at most) until the port accepts.
start_server() {
	local sb=$1 s=$2 port=$3 err=$4
	case $s in
	uring:*) SWITCHBOARD_URING_OPTS=${s#uring:} taskset -c 0 "$sb" serve --model uring --loops 1 --listen "127.0.0.1:$port" 2>"$err" & ;;
	*) taskset -c 0 "$sb" serve --model "$s" --loops 1 --listen "127.0.0.1:$port" 2>"$err" & ;;
	esac
	pid=$!
	wait_port "$port"
}

# wait_port PORT waits (5 s at most) until 127.0.0.1:PORT accepts.
wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
}

# free_port prints a loopback port nothing listens on now (the kernel's
# choice), so a server does not collide with one still on a random pick.
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
