#!/usr/bin/env bash
# Docker's tutorial examples, built with `farm build` and checked in the resulting image:
# content (exported root filesystem), config (farm inspect) and history (farm history).
source "$TEST_SRCDIR/farm/tests/e2e/lib.sh"
busybox_base

# 1. FROM scratch + a static binary + ENTRYPOINT.
mkdir -p "$T/static"
cp /bin/busybox "$T/static/busybox"
cat >"$T/static/Dockerfile" <<'DF'
FROM scratch
COPY busybox /busybox
ENTRYPOINT ["/busybox", "echo", "hello from scratch"]
DF
check "static: build" build static "$T/static" -t static:1
check "static: run prints the message" test "$("$FARM" run static:1)" = "hello from scratch"
"$FARM" inspect static:1 >"$T/static.json"
check "static: entrypoint" test "$(json "$T/static.json" 'j[0]["Config"]["Entrypoint"]')" = \
  "['/busybox', 'echo', 'hello from scratch']"
check "static: one layer" test "$(json "$T/static.json" 'len(j[0]["RootFS"]["Layers"])')" = 1
rm -rf "$T/static-out"
check "static: export" build static-out "$T/static" -o "type=local,dest=$T/static-out"
check "static: file only" test "$(cd "$T/static-out" && find . -mindepth 1 | sort | tr '\n' ' ')" = "./busybox "
check "static: mode 0755 (the context file's)" test "$(stat -c %a "$T/static-out/busybox")" = 755

# 2. A busybox base with WORKDIR/COPY/RUN/ENV/EXPOSE/CMD.
mkdir -p "$T/app/src"
echo "print me" >"$T/app/src/message.txt"
cat >"$T/app/Dockerfile" <<'DF'
FROM busybox:farm-example
WORKDIR /app
COPY src/ ./
RUN cat message.txt > copied.txt && echo "$GREETING" > env-at-build.txt
ENV GREETING=hi
EXPOSE 8080 53/udp
CMD ["cat", "/app/copied.txt"]
DF
check "app: build" build app "$T/app" -t app:1
check "app: run" test "$("$FARM" run app:1)" = "print me"
"$FARM" inspect app:1 >"$T/app.json"
check "app: workdir" test "$(json "$T/app.json" 'j[0]["Config"]["WorkingDir"]')" = /app
check "app: env" test "$(json "$T/app.json" '"GREETING=hi" in j[0]["Config"]["Env"]')" = True
check "app: ports" test "$(json "$T/app.json" 'sorted(j[0]["Config"]["ExposedPorts"])')" = \
  "['53/udp', '8080/tcp']"
check "app: cmd" test "$(json "$T/app.json" 'j[0]["Config"]["Cmd"]')" = "['cat', '/app/copied.txt']"
rm -rf "$T/app-out"
check "app: export" build app-out "$T/app" -o "type=local,dest=$T/app-out"
check "app: copied file" test "$(cat "$T/app-out/app/copied.txt")" = "print me"
check "app: ENV comes after the RUN (empty then)" test "$(cat "$T/app-out/app/env-at-build.txt")" = ""
check "app: base files present" test -x "$T/app-out/bin/busybox"
"$FARM" history --no-trunc app:1 >"$T/app.history"
check "app: history CMD" grep -q 'CMD \["cat" "/app/copied.txt"\]' "$T/app.history"
check "app: history RUN" grep -q 'RUN /bin/sh -c cat message.txt > copied.txt' "$T/app.history"
check "app: history COPY" grep -q 'COPY src/ ./ # buildkit' "$T/app.history"
check "app: history WORKDIR" grep -q 'WORKDIR /app' "$T/app.history"
check "app: base layers shown as <missing>" grep -q '^<missing>' "$T/app.history"

# 3. ENTRYPOINT with arguments appended by farm run (the tutorial's myhelloworld).
cp -rL "$TEST_SRCDIR/farm/tests/examples/hello" "$T/hello"
check "hello: build" build hello "$T/hello" -t myhelloworld:1.0
check "hello: run with an argument" test "$("$FARM" run myhelloworld:1.0 Alice)" = "Hello Alice"
check "hello: run with the default CMD" test "$("$FARM" run myhelloworld:1.0)" = "Hello world"

# 4. ARG with a default, overridden by --build-arg.
mkdir -p "$T/arg"
cat >"$T/arg/Dockerfile" <<'DF'
FROM busybox:farm-example
ARG FLAVOR=vanilla
RUN echo "$FLAVOR" > /flavor
CMD ["cat", "/flavor"]
DF
check "arg: default" build arg1 "$T/arg" -t arg:default
check "arg: default value" test "$("$FARM" run arg:default)" = vanilla
check "arg: override" build arg2 "$T/arg" -t arg:override --build-arg FLAVOR=chocolate
check "arg: overridden value" test "$("$FARM" run arg:override)" = chocolate
check "arg: not in the image env" test "$(json <("$FARM" inspect arg:override) \
  'any(e.startswith("FLAVOR=") for e in j[0]["Config"]["Env"])')" = False
check "arg: unused build-arg is a warning" build arg3 "$T/arg" --build-arg UNUSED=1
check "arg: the warning says so" grep -q "UNUSED\] were not consumed" "$T/arg3.log"

# 5. USER switching to a user added in a RUN.
mkdir -p "$T/user"
cat >"$T/user/Dockerfile" <<'DF'
FROM busybox:farm-example
# Debian's busybox has no adduser applet: add the user the way adduser does.
RUN echo 'app:x:1234:1234::/home/app:/bin/sh' >> /etc/passwd \
 && echo 'app:x:1234:' >> /etc/group && mkdir -p /home/app && chown app:app /home/app
USER app
RUN id -u > /tmp/uid && id -un > /tmp/name && touch /tmp/owned-by-app
CMD ["id", "-un"]
DF
check "user: build" build user "$T/user" -t user:1
check "user: runs as app" test "$("$FARM" run user:1)" = app
rm -rf "$T/user-out"
check "user: export" build user-out "$T/user" -o "type=local,dest=$T/user-out"
check "user: RUN ran as uid 1234" test "$(cat "$T/user-out/tmp/uid")" = 1234
check "user: file owned by app" test "$(stat -c %u "$T/user-out/tmp/owned-by-app")" = 1234
check "user: config" test "$(json <("$FARM" inspect user:1) 'j[0]["Config"]["User"]')" = app

# 6. Multi-stage with COPY --from.
mkdir -p "$T/multi"
cat >"$T/multi/Dockerfile" <<'DF'
FROM busybox:farm-example AS builder
RUN mkdir /out && echo "built in stage one" > /out/artifact && echo junk > /junk
FROM busybox:farm-example AS other
RUN echo other > /other
FROM scratch
COPY --from=builder /out/artifact /artifact
COPY --from=other /other /other
COPY --from=busybox:farm-example /bin/busybox /bin/busybox
ENTRYPOINT ["/bin/busybox", "cat", "/artifact", "/other"]
DF
check "multi: build" build multi "$T/multi" -t multi:1
check "multi: run" test "$("$FARM" run multi:1 | tr '\n' ' ')" = "built in stage one other "
rm -rf "$T/multi-out"
check "multi: export" build multi-out "$T/multi" -o "type=local,dest=$T/multi-out"
check "multi: only what was copied" test "$(cd "$T/multi-out" && find . -type f | sort | tr '\n' ' ')" = \
  "./artifact ./bin/busybox ./other "

# 6b. Stages that do not depend on each other run at the same time: their RUN intervals
# overlap (checked from the timestamps they record, not by timing the build; /proc/uptime is
# the host's, in centiseconds, since busybox's date has no %N).
mkdir -p "$T/par"
cat >"$T/par/Dockerfile" <<'DF'
FROM busybox:farm-example AS left
RUN awk '{print int($1*100)}' /proc/uptime > /start && sleep 1 && awk '{print int($1*100)}' /proc/uptime > /end && echo left
FROM busybox:farm-example AS right
RUN awk '{print int($1*100)}' /proc/uptime > /start && sleep 1 && awk '{print int($1*100)}' /proc/uptime > /end && echo right
FROM scratch
COPY --from=left /start /left.start
COPY --from=left /end /left.end
COPY --from=right /start /right.start
COPY --from=right /end /right.end
DF
rm -rf "$T/par-out"
check "parallel stages: build" build par "$T/par" -o "type=local,dest=$T/par-out"
check "parallel stages: their RUNs overlapped" test \
  "$(cat "$T/par-out/left.start")" -lt "$(cat "$T/par-out/right.end")" -a \
  "$(cat "$T/par-out/right.start")" -lt "$(cat "$T/par-out/left.end")"

# 7. ADD of a local tar, extracted.
mkdir -p "$T/add/tree/sub"
echo inside >"$T/add/tree/sub/file.txt"
tar -C "$T/add/tree" -czf "$T/add/bundle.tar.gz" .
rm -rf "$T/add/tree"
cat >"$T/add/Dockerfile" <<'DF'
FROM busybox:farm-example
ADD bundle.tar.gz /opt/bundle/
RUN cat /opt/bundle/sub/file.txt > /seen
DF
check "add: build" build add "$T/add" -t add:1
rm -rf "$T/add-out"
check "add: export" build add-out "$T/add" -o "type=local,dest=$T/add-out"
check "add: extracted" test "$(cat "$T/add-out/opt/bundle/sub/file.txt")" = inside
check "add: used by RUN" test "$(cat "$T/add-out/seen")" = inside
check "add: the archive itself is not there" test ! -e "$T/add-out/opt/bundle/bundle.tar.gz"

finish
