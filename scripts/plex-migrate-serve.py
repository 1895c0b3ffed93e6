#!/usr/bin/env python3
"""plex-migrate archive server: serves the Plex archive and the Tautulli snapshot to the cluster.

Started in the background by `plex-migrate-source.sh serve`. Only the named files are served, and
only under /<token>/<name>; every other path answers 404. GET and HEAD, with single HTTP ranges so
an interrupted download resumes (curl -C -). Clients outside --allow networks get 403. The server
exits by itself after --lifetime-seconds. The token never appears in its log lines.

Standard library only (python3 >= 3.6, as on every supported Ubuntu).
"""
import argparse
import datetime
import hmac
import http.server
import ipaddress
import os
import re
import signal
import socket
import socketserver
import sys
import threading

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK = 1024 * 1024


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--file", action="append", default=[], metavar="NAME=PATH", required=True)
    parser.add_argument("--allow", action="append", default=[], metavar="CIDR")
    parser.add_argument("--lifetime-seconds", type=int, required=True)
    parser.add_argument("--ready-file")
    parser.add_argument("--pid-file")
    parser.add_argument("--log")
    return parser.parse_args(argv)


class Log:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def __call__(self, message):
        stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %z")
        line = "[%s] [serve] %s\n" % (stamp, message)
        with self.lock:
            sys.stderr.write(line)
            sys.stderr.flush()
            if self.path:
                try:
                    with open(self.path, "a") as handle:
                        handle.write(line)
                except OSError:
                    pass


def make_handler(token, files, networks, log):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "plex-migrate"
        sys_version = ""
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # access lines are written by respond(), token redacted
            pass

        def client_allowed(self):
            if not networks:
                return True
            try:
                address = ipaddress.ip_address(self.client_address[0].split("%")[0])
            except ValueError:
                return False
            if address.version == 6 and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            return any(address in network for network in networks)

        def redacted_path(self):
            parts = self.path.split("/", 2)
            return "/***/" + parts[2] if len(parts) == 3 else "/***"

        def respond(self, status, body=b"", headers=None, note=""):
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if "Content-Length" not in (headers or {}):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)
            log(
                "%s %s %s %d%s"
                % (self.client_address[0], self.command, self.redacted_path(), status, note)
            )

        def not_found(self):
            self.respond(404, b"not found\n", {"Content-Type": "text/plain"})

        def do_GET(self):
            if not self.client_allowed():
                self.respond(403, b"client not allowed\n", {"Content-Type": "text/plain"})
                return
            parts = self.path.split("?", 1)[0].split("/")
            if len(parts) != 3 or parts[0] != "" or not hmac.compare_digest(parts[1], token):
                self.not_found()
                return
            path = files.get(parts[2])
            if path is None:
                self.not_found()
                return
            self.send_file(path)

        do_HEAD = do_GET

        def send_file(self, path):
            try:
                handle = open(path, "rb")
            except OSError:
                self.not_found()
                return
            with handle:
                size = os.fstat(handle.fileno()).st_size
                start, end = 0, size - 1
                status = 200
                header = self.headers.get("Range")
                if header:
                    match = RANGE.match(header.strip())
                    if match and (match.group(1) or match.group(2)):
                        first, last = match.group(1), match.group(2)
                        if first == "":
                            start, end = max(0, size - int(last)), size - 1
                        else:
                            start = int(first)
                            end = min(int(last), size - 1) if last else size - 1
                        if start >= size or start > end:
                            self.respond(416, b"", {"Content-Range": "bytes */%d" % size})
                            return
                        status = 206
                    # Other forms (several ranges) are allowed to get the whole file (RFC 9110).
                length = end - start + 1 if size else 0
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(length),
                    "Accept-Ranges": "bytes",
                }
                if status == 206:
                    headers["Content-Range"] = "bytes %d-%d/%d" % (start, end, size)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                sent = 0
                if self.command == "GET" and length > 0:
                    self.wfile.flush()
                    try:
                        sent = self.connection.sendfile(handle, start, length)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                note = " bytes=%d-%d sent=%d" % (start, end, sent) if status == 206 else " sent=%d" % sent
                log(
                    "%s %s %s %d%s"
                    % (self.client_address[0], self.command, self.redacted_path(), status, note)
                )

        def reject(self):
            self.not_found()

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = reject

    return Handler


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv):
    args = parse_args(argv)
    log = Log(args.log)
    with open(args.token_file) as handle:
        token = handle.read().strip()
    if not re.match(r"^[A-Za-z0-9_-]{22,}$", token):
        sys.exit("plex-migrate-serve: the token must be at least 22 URL-safe characters")
    files = {}
    for item in args.file:
        name, _, path = item.partition("=")
        if not name or "/" in name or not os.path.isfile(path):
            sys.exit("plex-migrate-serve: bad --file %r (NAME=PATH of an existing file)" % item)
        files[name] = path
    networks = []
    for cidr in args.allow:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            sys.exit("plex-migrate-serve: --allow %r is not a network such as 10.0.0.0/24" % cidr)

    family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET
    Server.address_family = family
    try:
        server = Server((args.bind, args.port), make_handler(token, files, networks, log))
    except OSError as error:
        sys.exit("plex-migrate-serve: cannot listen on %s:%d: %s" % (args.bind, args.port, error))

    def stop(reason):
        log("stopping: %s" % reason)
        threading.Thread(target=server.shutdown, daemon=True).start()

    timer = threading.Timer(args.lifetime_seconds, stop, args=("lifetime of %ds reached" % args.lifetime_seconds,))
    timer.daemon = True
    timer.start()
    signal.signal(signal.SIGTERM, lambda *_: stop("SIGTERM"))
    signal.signal(signal.SIGINT, lambda *_: stop("SIGINT"))

    if args.ready_file:
        with open(args.ready_file, "w") as handle:
            handle.write("%d\n" % os.getpid())
    log(
        "listening on %s:%d for %ds, files: %s, allowed: %s"
        % (args.bind, args.port, args.lifetime_seconds, ", ".join(sorted(files)),
           ", ".join(args.allow) or "any client with the token")
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        for path in (args.ready_file, args.pid_file):
            try:
                if path and open(path).read().strip() in ("", str(os.getpid())):
                    os.unlink(path)
            except OSError:
                pass
        log("stopped")


if __name__ == "__main__":
    main(sys.argv[1:])
