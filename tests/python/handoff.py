"""A Workload API connection made by one process and used by another (the race of defect 11).

    handoff.py MODE AGENT_SOCKET PROXY_SOCKET [OTHER_PYTHON]

The process connects to the agent's socket and waits for the server's first HTTP/2 bytes
(the agent has accepted, and so pinned, the connection). Then, by MODE:

- stay: it relays the connection itself (a normal caller);
- fork: it forks and exits; the child, holding the connection, relays it;
- exec: it executes OTHER_PYTHON (another executable) on the connection, which relays it.

Relaying: listen on PROXY_SOCKET, accept one client (the test's gRPC client, which connects
only once the caller is gone or replaced: no sleeps) and copy bytes both ways, the agent's
first bytes first. Only the standard library is used.
"""

import os
import select
import socket
import sys


def relay(agent, first, proxy_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(proxy_path + ".tmp")
    listener.listen(1)
    # The path appears only when accepting can begin.
    os.rename(proxy_path + ".tmp", proxy_path)
    client, _ = listener.accept()
    client.sendall(first)
    peers = {agent: client, client: agent}
    while True:
        ready, _, _ = select.select(list(peers), [], [])
        for s in ready:
            data = s.recv(65536)
            if not data:
                return
            peers[s].sendall(data)


def main():
    mode, agent_path, proxy_path = sys.argv[1:4]
    if mode == "serve-fd":
        fd, first = int(sys.argv[4]), bytes.fromhex(sys.argv[5])
        relay(socket.socket(fileno=fd), first, proxy_path)
        return
    agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    agent.connect(agent_path)
    first = agent.recv(65536)
    if mode == "stay":
        relay(agent, first, proxy_path)
    elif mode == "fork":
        if os.fork() != 0:
            os._exit(0)
        relay(agent, first, proxy_path)
    elif mode == "exec":
        other = sys.argv[4]
        os.set_inheritable(agent.fileno(), True)
        os.execv(
            other,
            [other, __file__, "serve-fd", agent_path, proxy_path, str(agent.fileno()), first.hex()],
        )
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
