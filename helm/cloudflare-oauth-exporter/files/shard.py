"""Start cloudflare-oauth-exporter as shard N of its StatefulSet, N read from the pod's own name.

A StatefulSet names its pods <statefulset>-<ordinal> on every Kubernetes version, whereas the
apps.kubernetes.io/pod-index label exists only from 1.28 on. The chart passes the pod name in
POD_NAME; this sets EXPORTER_SHARD to its ordinal, fills in the $(EXPORTER_SHARD) references that
Kubernetes left as written in the environment and the arguments (it cannot know the value), and
replaces itself with the exporter. Python rather than a shell script: the image promises Python
(the exporter runs on it), not a shell.
"""

import os
import re
import sys

pod = os.environ.get("POD_NAME", "")
ordinal = re.fullmatch(r".+-(0|[1-9][0-9]*)", pod)
if ordinal is None:
    sys.exit(
        f"cloudflare-oauth-exporter: cannot take a shard from the pod name {pod!r} (POD_NAME): "
        "expected <statefulset>-<ordinal>; run sharded exporters from the chart's StatefulSet"
    )
shard = ordinal.group(1)
# Spelt in two parts: Kubernetes expands $(VAR) in a container's command too, this one included.
reference = "$" + "(EXPORTER_SHARD)"
os.environ["EXPORTER_SHARD"] = shard
for key, value in list(os.environ.items()):
    os.environ[key] = value.replace(reference, shard)
args = [arg.replace(reference, shard) for arg in sys.argv[1:]]
# PATH finds the console script, exactly as the image's ENTRYPOINT does.
os.execvp("cloudflare-oauth-exporter", ["cloudflare-oauth-exporter", *args])  # noqa: S606, S607
