#!/usr/bin/env bash
# Headless Chromium + chromedriver for the console's browser tests (tests/test_console_browser.py).
# Idempotent and quick when present; installs the Debian packages when run as root with apt-get;
# otherwise says why and leaves the browser tests to skip with that reason.
set -uo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: chromium/chromedriver missing and cannot apt-get here (need root + apt);" \
        "the console browser tests will be skipped" >&2
    exit 0
fi
echo "install_browser: apt-get install chromium chromium-driver (about a minute)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver; } >/tmp/yooprl_install_browser.log 2>&1; then
    echo "install_browser: apt-get failed (see /tmp/yooprl_install_browser.log);" \
        "the console browser tests will be skipped" >&2
fi
exit 0
