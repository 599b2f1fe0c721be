# A boto3 consumer for bench/cmd/chaos: one thread per user signs STS
# GetCallerIdentity calls with a profile whose credentials come from
# credential_process (keyrot credentials USER --api URL), until the stop
# file exists. Prints its figures as JSON on stdout.
#
#   python3 consumer.py SANDBOX_URL STOP_FILE HEAL_FILE USER...
import json, os, sys, threading, time

import boto3
import botocore.config
import botocore.exceptions

AUTH = {"InvalidClientTokenId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken",
        "UnrecognizedClientException", "IncompleteSignature", "AuthFailure"}
url, stop_file, heal_file, users = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
results = {}


def now():
    return time.strftime("%H:%M:%S", time.gmtime())


def key_id(session):
    try:
        return session.get_credentials().get_frozen_credentials().access_key
    except Exception:  # noqa: BLE001 - only for the failure's description
        return "?"


def consume(user):
    r = {"Calls": 0, "OK": 0, "Unavailable": 0, "OKInHeal": 0, "Failures": []}
    results[user] = r
    session = boto3.session.Session(profile_name=user)
    client = session.client("sts", endpoint_url=url, region_name="us-east-1",
                            config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 3}))
    while not os.path.exists(stop_file):
        r["Calls"] += 1
        try:
            client.get_caller_identity()
            r["OK"] += 1
            if os.path.exists(heal_file):
                r["OKInHeal"] += 1
        except botocore.exceptions.ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in AUTH:
                r["Failures"].append("%s with key %s: STS refused the key: %s" % (now(), key_id(session), code))
            else:
                r["Unavailable"] += 1  # throttled, 5xx: not about the key
        except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError):
            r["Unavailable"] += 1  # STS not there (the sandbox killed) or too slow
        except Exception as e:  # noqa: BLE001 - anything else (no credentials, "still expired") is a failure
            r["Failures"].append("%s: %s: %s" % (now(), type(e).__name__, (str(e).splitlines() or [""])[0][:240]))
        time.sleep(0.5)


threads = [threading.Thread(target=consume, args=(u,), daemon=True) for u in users]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"users": results}))
