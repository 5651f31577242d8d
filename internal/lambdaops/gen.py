#!/usr/bin/env python3
"""Regenerates model.go from the aws-sdk-go-v2 Lambda module in go.mod:
python3 internal/lambdaops/gen.py (from the module root)."""
import json, re, subprocess, sys, os

d = json.loads(subprocess.check_output(["go", "list", "-m", "-json", "github.com/aws/aws-sdk-go-v2/service/lambda"]))
src = open(os.path.join(d["Dir"], "schemas", "schemas.go")).read()
rows = re.findall(r'Name:\s+"(\w+)",\n\}, smithy\.ShapeTypeOperation, 0, &smithytraits\.HTTP\{Method: "(\w+)",\n\s+URI:\s+"([^"]+)",\n\s+Code:\s+(\d+)\}\)', src)
out = ["// Code generated from aws-sdk-go-v2/service/lambda %s (schemas/schemas.go) by" % d["Version"],
       "// internal/lambdaops/gen.py; DO NOT EDIT. The HTTP binding of every operation",
       "// in the current Lambda model.", "", "package lambdaops", "", "var model = []Route{"]
for name, meth, uri, code in sorted(rows):
    out.append('\t{Name: "%s", Method: "%s", URI: "%s", Status: %s},' % (name, meth, uri, code))
out.append("}")
open(os.path.join(os.path.dirname(__file__), "model.go"), "w").write("\n".join(out) + "\n")
print("%d operations" % len(rows), file=sys.stderr)
