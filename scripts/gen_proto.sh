#!/usr/bin/env bash
# Regenerates multiraft/proto/*_pb2.py and *.pyi from the .proto sources.
# Needs grpcio-tools (`pip install '.[proto]'`); the generated files are committed, so a normal
# install never runs this. The generated code needs protobuf >= the protoc version it reports.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m grpc_tools.protoc -I multiraft/proto --python_out=multiraft/proto --pyi_out=multiraft/proto \
  multiraft/proto/*.proto
# protoc writes top-level imports (`import eraftpb_pb2`); make them package-relative.
sed -i -E 's/^import ([a-z_]+_pb2) as /from . import \1 as /' multiraft/proto/*_pb2.py
sed -i -E 's/^import ([a-z_]+_pb2) as /from . import \1 as /' multiraft/proto/*_pb2.pyi
echo "generated: $(ls multiraft/proto/*_pb2.py | tr '\n' ' ')"
