#!/usr/bin/env python3
"""A gRPC client of the C core (Python's grpcio), for tests/authority.rs.

    grpc_path_authority.py TARGET [--authority VALUE] METHOD...

Connects to TARGET (`unix:/path` or `host:port`) with grpcio's own defaults,
which over a unix socket send the socket's path, percent-encoded, as the
HTTP/2 `:authority`. --authority sends VALUE instead, as kubelets before
1.26 and grpc-java do with the raw path. Calls each METHOD (a full gRPC
method name such as /csi.v1.Identity/Probe) once with an empty request
message (whose protobuf encoding is no bytes at all) and prints one JSON
line per call: the status code's name, its details, and the response
message's bytes in hex, for the caller to decode.
"""

import argparse
import json
import sys

import grpc

DEADLINE_SECONDS = 20


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("--authority")
    parser.add_argument("methods", nargs="+")
    args = parser.parse_args()

    options = []
    if args.authority is not None:
        options.append(("grpc.default_authority", args.authority))
    with grpc.insecure_channel(args.target, options=options) as channel:
        for method in args.methods:
            call = channel.unary_unary(method)
            try:
                response = call(b"", timeout=DEADLINE_SECONDS)
                result = {"code": "OK", "details": "", "response": response.hex()}
            except grpc.RpcError as error:
                result = {
                    "code": error.code().name,
                    "details": error.details() or "",
                    "response": "",
                }
            result["method"] = method
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
