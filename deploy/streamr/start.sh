#!/bin/sh
# Starts the Streamr node of deploy/docker-compose.yml with its secrets.
#
# The node reads no secret files, but it takes any config value from STREAMR__BROKER__
# environment variables. This fills the two secret ones from the compose secrets, so
# default.json (in git) holds no key:
#   client.auth.privateKey     <- /run/secrets/streamr_private_key (the node's Ethereum key)
#   apiAuthentication.keys[0]  <- /run/secrets/streamr_api_key (what wearbridge presents)
# default.json lists no API key, so without this the node accepts no client at all.
set -eu

for f in /run/secrets/streamr_private_key /run/secrets/streamr_api_key; do
    if [ ! -s "$f" ]; then
        echo "start.sh: $f is missing or empty; see the README (Running with docker compose)" >&2
        exit 1
    fi
done

STREAMR__BROKER__CLIENT__AUTH__PRIVATE_KEY="$(cat /run/secrets/streamr_private_key)"
STREAMR__BROKER__API_AUTHENTICATION__KEYS_1="$(cat /run/secrets/streamr_api_key)"
export STREAMR__BROKER__CLIENT__AUTH__PRIVATE_KEY STREAMR__BROKER__API_AUTHENTICATION__KEYS_1

# The image's own command, from its working directory.
exec /usr/local/bin/npm exec -c streamr-node
