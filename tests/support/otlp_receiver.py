"""An OTLP/HTTP trace receiver for the tests: decodes what the gateway posts to /v1/traces with
the OpenTelemetry project's own protobuf definitions (the opentelemetry-proto package), and
appends one JSON line per span to OUT.

    python3 otlp_receiver.py PORT OUT

Each line: trace_id, span_id, parent_span_id (hex; "" for a root), name, kind, the resource's
service.name, and every attribute as a string.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

PORT, OUT = int(sys.argv[1]), sys.argv[2]


def value(any_value):
    kind = any_value.WhichOneof("value")
    return str(getattr(any_value, kind)) if kind else ""


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = 200
        if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
            status = 415
        else:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            with open(OUT, "a") as out:
                for resource_spans in request.resource_spans:
                    resource = {a.key: value(a.value) for a in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            out.write(
                                json.dumps(
                                    {
                                        "trace_id": span.trace_id.hex(),
                                        "span_id": span.span_id.hex(),
                                        "parent_span_id": span.parent_span_id.hex(),
                                        "name": span.name,
                                        "kind": span.kind,
                                        "service": resource.get("service.name"),
                                        "status": span.status.code,
                                        "attributes": {a.key: value(a.value) for a in span.attributes},
                                    }
                                )
                                + "\n"
                            )
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


ThreadingHTTPServer(("127.0.0.1", PORT), Receiver).serve_forever()
