"""A real SPIFFE client (py-spiffe) exercising a Workload API socket.

Usage: workload_client.py SOCKET MODE [options]; prints one JSON object on stdout.

Modes:
  full       X.509 context, JWT-SVID, JWT bundles, ValidateJWTSVID through the agent, local
             JWT validation with the fetched bundles, and (with --rotations N) N rotated SVIDs
             received on the X.509 context stream.
  x509       the X.509 context only.
  jwt        a JWT-SVID for --audience.
  error      a call expected to fail: prints the gRPC status code name (--call x509|jwt).
"""

import argparse
import json
import sys
import threading
import time

from cryptography.hazmat.primitives.serialization import Encoding

from spiffe import JwtSvid, WorkloadApiClient


def pem_chain(certs):
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certs)


def x509_summary(ctx):
    out = []
    for svid in ctx.x509_svids:
        td = svid.spiffe_id.trust_domain
        bundle = ctx.x509_bundle_set.get_bundle_for_trust_domain(td)
        out.append(
            {
                "spiffe_id": str(svid.spiffe_id),
                "serial": format(svid.leaf.serial_number, "x"),
                "not_after": int(svid.leaf.not_valid_after_utc.timestamp()),
                "chain_pem": pem_chain(svid.cert_chain),
                "bundle_pem": pem_chain(bundle.x509_authorities) if bundle else "",
            }
        )
    return out


def status_name(exc):
    # py-spiffe wraps grpc errors; find the grpc code in the chain.
    e = exc
    while e is not None:
        code = getattr(e, "code", None)
        if callable(code):
            try:
                return code().name
            except Exception:  # noqa: BLE001
                pass
        e = e.__cause__ or e.__context__
    return type(exc).__name__ + ": " + str(exc)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("socket")
    p.add_argument("mode")
    p.add_argument("--audience", default="trustdeck-test")
    p.add_argument("--rotations", type=int, default=0)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--call", default="x509")
    a = p.parse_args()
    client = WorkloadApiClient(socket_path="unix://" + a.socket, default_timeout=a.timeout)
    result = {}
    try:
        if a.mode == "error":
            try:
                if a.call == "x509":
                    client.fetch_x509_context()
                elif a.call == "jwt":
                    client.fetch_jwt_svid(audience={a.audience})
                result["unexpected_success"] = True
            except Exception as e:  # noqa: BLE001
                result["error"] = status_name(e)
                result["message"] = str(e)
        if a.mode in ("full", "x509"):
            ctx = client.fetch_x509_context()
            result["x509"] = x509_summary(ctx)
        if a.mode in ("full", "jwt"):
            svid = client.fetch_jwt_svid(audience={a.audience})
            result["jwt"] = {
                "spiffe_id": str(svid.spiffe_id),
                "token": svid.token,
                "expiry": svid.expiry,
            }
        if a.mode == "full":
            bundles = client.fetch_jwt_bundles()
            result["jwt_bundles"] = {
                str(b.trust_domain): sorted(b.jwt_authorities.keys()) for b in bundles.bundles
            }
            validated = client.validate_jwt_svid(result["jwt"]["token"], a.audience)
            result["validated_spiffe_id"] = str(validated.spiffe_id)
            insecure = JwtSvid.parse_insecure(result["jwt"]["token"], {a.audience})
            td_bundle = bundles.get_bundle_for_trust_domain(insecure.spiffe_id.trust_domain)
            local = JwtSvid.parse_and_validate(result["jwt"]["token"], td_bundle, {a.audience})
            result["locally_validated_spiffe_id"] = str(local.spiffe_id)
            if a.rotations > 0:
                seen = []
                done = threading.Event()
                errors = []

                def on_success(ctx):
                    serial = format(ctx.default_svid.leaf.serial_number, "x")
                    if serial not in [s["serial"] for s in seen]:
                        seen.append(x509_summary(ctx)[0])
                    if len(seen) > a.rotations:
                        done.set()

                def on_error(e):
                    errors.append(str(e))

                handle = client.stream_x509_contexts(on_success, on_error)
                done.wait(a.timeout)
                handle.cancel()
                result["stream"] = seen
                result["stream_errors"] = errors
    finally:
        client.close()
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
