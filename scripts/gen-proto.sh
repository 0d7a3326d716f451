#!/usr/bin/env bash
# Regenerate warden_framework/protocol/pb/warden_pb2.py from warden_framework/protocol/warden.proto.
#
# protoc comes from grpcio-tools, installed into a throwaway venv so that it never becomes a
# dependency of the project. The grpcio-tools version is pinned to one whose bundled protoc
# emits code that every runtime pyproject.toml admits (protobuf>=5.29,<8, without 6.30-6.31)
# accepts: generated code must not be newer than the oldest runtime (5.29). Run from anywhere; needs PyPI.
#   scripts/gen-proto.sh            regenerate
#   PYTHON=python3.11 scripts/gen-proto.sh
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
tools_version=1.70.0
python=${PYTHON:-python3}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q "grpcio-tools==$tools_version"

cd "$top/warden_framework/protocol"
"$tmp/venv/bin/python" -m grpc_tools.protoc -I. --python_out=pb --pyi_out=pb warden.proto
echo "gen-proto: wrote $(cd pb && ls warden_pb2.py warden_pb2.pyi | tr '\n' ' ')"
