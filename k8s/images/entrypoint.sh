#!/bin/sh
# Starts one kubetune part: python -m $KUBETUNE_MODULE, as PID 1 so it gets SIGTERM.
# Dev images (RELOAD=true) run it under watchfiles, which restarts it when Skaffold
# syncs an edited .py file into /app.
set -e
if [ "$KUBETUNE_DEV_RELOAD" = "true" ]; then
  exec watchfiles --filter python --target-type command "python -m $KUBETUNE_MODULE" /app
fi
exec python -m "$KUBETUNE_MODULE" "$@"
