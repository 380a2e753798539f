"""A real SPIFFE client (py-spiffe) exercising a Workload API socket.

Usage: workload_client.py SOCKET MODE [options]; prints one JSON object on stdout.

Modes:
  full       X.509 context, JWT-SVID, JWT bundles, ValidateJWTSVID through the agent, local
             JWT validation with the fetched bundles, and (with --rotations N) N rotated SVIDs
             received on the X.509 context stream.
  x509       the X.509 context only.
  jwt        a JWT-SVID for --audience.
  error      a call expected to fail: prints the gRPC status code name (--call x509|jwt).
  watch      the continuous validator (watch.py): validates every held X.509-SVID against the
             held bundle every --interval-ms, a fresh JWT-SVID against the held JWT bundles
             every --jwt-interval-ms (0: never), until SIGTERM or --stop-file exists; prints
             validations, failures (time, reason), serials and bundle roots seen.
  federated  what the workload holds of foreign trust domain --trust-domain: the roots
             (SHA-256 fingerprints) in the X.509 context and in FetchX509Bundles, the JWT key
             ids in FetchJWTBundles; with --chain-file (a PEM chain of that trust domain, leaf
             first) whether it verifies against the context's bundle (null or the reason);
             with --token (its JWT-SVID for --audience) as jwt-check does.
  selftest   the chain check against made-up chains that must fail (and one that must not);
             SOCKET is ignored.
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


def fingerprints(certs):
    from cryptography.hazmat.primitives import hashes

    return sorted(c.fingerprint(hashes.SHA256()).hex() for c in certs)


def federated(client, a):
    import datetime

    from cryptography import x509
    from spiffe import TrustDomain

    from svid_check import check_chain

    td = TrustDomain(a.trust_domain)
    out = {}
    ctx = client.fetch_x509_context()
    in_ctx = ctx.x509_bundle_set.get_bundle_for_trust_domain(td)
    out["context_roots"] = fingerprints(in_ctx.x509_authorities) if in_ctx else []
    bundles = client.fetch_x509_bundles().get_bundle_for_trust_domain(td)
    out["x509_bundles_roots"] = fingerprints(bundles.x509_authorities) if bundles else []
    jwt = client.fetch_jwt_bundles().get_bundle_for_trust_domain(td)
    out["jwt_kids"] = sorted(jwt.jwt_authorities.keys()) if jwt else []
    if a.chain_file:
        with open(a.chain_file, "rb") as f:
            chain = x509.load_pem_x509_certificates(f.read())
        roots = in_ctx.x509_authorities if in_ctx else []
        out["chain"] = check_chain(chain, roots, datetime.datetime.now(datetime.timezone.utc))
    if a.token:
        if jwt is None:
            out["local"] = "no JWT bundle for " + a.trust_domain
        else:
            try:
                JwtSvid.parse_and_validate(a.token, jwt, {a.audience})
                out["local"] = None
            except Exception as e:  # noqa: BLE001
                out["local"] = str(e) or type(e).__name__
        try:
            v = client.validate_jwt_svid(a.token, a.audience)
            out["agent"] = None
            out["agent_spiffe_id"] = str(v.spiffe_id)
        except Exception as e:  # noqa: BLE001
            out["agent"] = status_name(e) + ": " + str(e)
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
    p.add_argument("--interval-ms", type=int, default=100)
    p.add_argument("--jwt-interval-ms", type=int, default=1000)
    p.add_argument("--stop-file")
    p.add_argument("--ready-file")
    p.add_argument("--status-file", help="rewritten twice a second with the summary so far")
    p.add_argument("--max-secs", type=float, default=300.0)
    p.add_argument("--bundle-override", help="PEM roots to validate against instead")
    p.add_argument("--token", help="jwt-check, federated: the JWT-SVID to validate")
    p.add_argument("--trust-domain", help="federated: the foreign trust domain")
    p.add_argument("--chain-file", help="federated: a PEM chain to verify")
    a = p.parse_args()
    if a.mode == "selftest":
        from svid_check import self_test

        json.dump(self_test(), sys.stdout)
        return 0
    client = WorkloadApiClient(socket_path="unix://" + a.socket, default_timeout=a.timeout)
    result = {}
    if a.mode == "watch":
        from watch import Watch, load_roots

        override = load_roots(a.bundle_override) if a.bundle_override else None
        w = Watch(client, a.audience, override)
        try:
            result = w.run(
                a.interval_ms / 1000.0,
                a.jwt_interval_ms / 1000.0,
                a.stop_file,
                a.max_secs,
                a.ready_file,
                a.status_file,
            )
        finally:
            client.close()
        json.dump(result, sys.stdout)
        return 0
    try:
        if a.mode == "federated":
            result = federated(client, a)
        if a.mode == "jwt-check":
            # A given JWT-SVID validated with the JWT bundle py-spiffe fetches, and by the agent
            # (ValidateJWTSVID): each result is null (valid) or the reason.
            bundles = client.fetch_jwt_bundles()
            insecure = JwtSvid.parse_insecure(a.token, {a.audience})
            td_bundle = bundles.get_bundle_for_trust_domain(insecure.spiffe_id.trust_domain)
            result["bundle_kids"] = sorted(td_bundle.jwt_authorities.keys()) if td_bundle else []
            try:
                JwtSvid.parse_and_validate(a.token, td_bundle, {a.audience})
                result["local"] = None
            except Exception as e:  # noqa: BLE001
                result["local"] = str(e) or type(e).__name__
            try:
                client.validate_jwt_svid(a.token, a.audience)
                result["agent"] = None
            except Exception as e:  # noqa: BLE001
                result["agent"] = status_name(e) + ": " + str(e)
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
