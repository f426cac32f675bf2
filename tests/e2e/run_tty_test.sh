#!/usr/bin/env bash
# `farm run` never hands the caller's terminal to the command (issue 13): with -t the command
# gets a pseudo-terminal of its own in a session of its own; without -t, pipes. The caller is
# simulated by tests/e2e/pty_caller.py (a session whose controlling terminal is a fresh pty);
# the probe (tests/probe) pushes keystrokes with TIOCSTI. Harmless means: nothing is left
# queued in the caller's terminal input, which a shell would read and run next.
source "$TEST_SRCDIR/farm/tests/e2e/lib.sh"
CALLER="$TEST_SRCDIR/farm/tests/e2e/pty_caller.py"
PROBE="$TEST_SRCDIR/farm/tests/probe/probe"

busybox_base
mkdir -p "$T/probe"
cp "$PROBE" "$T/probe/probe"
printf 'FROM busybox:farm-example\nCOPY probe /probe\n' >"$T/probe/Dockerfile"
check "probe image" build probe "$T/probe" -t probe:1

caller() { python3 "$CALLER" "$@" >"$T/caller.json" 2>"$T/caller.err"; }
field() { json "$T/caller.json" "$1"; }

# The harness sees an injection when there is one: the probe run directly at the terminal.
caller -- "$PROBE" tiocsti $'echo PWNED\n'
check "control: TIOCSTI on the caller's own terminal is seen (queued $(field 'j["queued_input"]'))" \
  test "$(field 'j["queued_input"]')" -gt 0

# -t: the probe's terminal is its own; what it pushes stays there.
caller -- "$FARM" run -it probe:1 /probe tiocsti $'echo PWNED\n'
check "-it: the probe pushed its keystrokes ($(field 'j["output"]' | grep -a tiocsti | tr -d '\r'))" \
  sh -c "grep -q 'tiocsti: 11 of 11 bytes' '$T/caller.json'"
check "-it: nothing queued in the caller's terminal (queued $(field 'j["queued_input"]'))" \
  test "$(field 'j["queued_input"]')" = 0
check "-it: the caller's terminal is back in canonical mode" test "$(field 'j["canonical_after"]')" = True

# -i without -t: stdin is a pipe, there is no terminal to push into.
caller -- "$FARM" run -i probe:1 /probe tiocsti $'echo PWNED\n'
check "-i: TIOCSTI refused ($(field 'j["output"]' | grep -a tiocsti | tr -d '\r'))" \
  sh -c "grep -q 'tiocsti: 0 of 11 bytes, then Inappropriate ioctl' '$T/caller.json'"
check "-i: nothing queued in the caller's terminal" test "$(field 'j["queued_input"]')" = 0

# What the command sees.
caller -- "$FARM" run -t probe:1 /probe tty
out=$(field 'j["output"]' | tr -d '\r')
check "-t: stdin is a terminal" grep -q "stdin_tty: yes" <<<"$out"
check "-t: it is the command's controlling terminal" grep -q "controlling_tty: yes" <<<"$out"
check "-t: the command leads its own session" grep -q "session_leader: yes" <<<"$out"
check "-t: ttyname is /dev/console" grep -q "ttyname: /dev/console" <<<"$out"
caller -- "$FARM" run -i probe:1 /probe tty
out=$(field 'j["output"]' | tr -d '\r')
check "-i: stdin is not a terminal" grep -q "stdin_tty: no" <<<"$out"
check "-i: no controlling terminal" grep -q "controlling_tty: no" <<<"$out"
caller -- "$FARM" run probe:1 /probe tty
check "no -i: stdin is not a terminal" grep -q "stdin_tty: no" <(field 'j["output"]')

# The window size follows the caller's; ^C reaches the command through its terminal.
caller --rows 33 --cols 101 -- "$FARM" run -t probe:1 stty size
check "-t: the caller's window size ($(field 'j["output"]' | tr -d '\r\n'))" \
  test "$(field 'j["output"]' | tr -d '\r\n')" = "33 101"
caller --send-after 2 '\x03' --timeout 30 -- "$FARM" run -it probe:1 sleep 20
check "-it: ^C interrupts the command (exit $(field 'j["exit"]'))" test "$(field 'j["exit"]')" = 130

# Pipes keep working both ways without -t.
got=$(printf 'through the pipe\n' | "$FARM" run -i probe:1 cat)
check "-i: stdin relayed ($got)" test "$got" = "through the pipe"
got=$(printf 'not read\n' | "$FARM" run probe:1 sh -c 'cat; echo end')
check "no -i: stdin is empty ($got)" test "$got" = "end"
finish
