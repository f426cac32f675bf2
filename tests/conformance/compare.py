#!/usr/bin/env python3
"""Compares an image built by Docker with the same image built by farm.

    compare.py image CASE DOCKER.tar FARM.tar      # two saved images (docker save / farm save)
    compare.py failure CASE DOCKER_LINE FARM.log   # two failed builds: the same Dockerfile line?
    compare.py outcome CASE DOCKER_RC FARM_RC      # one engine failed: is that a kept difference?

Both archives are read through their manifest.json, so the classic layout of `docker save`
(<id>/layer.tar) and farm's (blobs/sha256/...) are read the same way. One function per compared
aspect: the final root filesystem, each layer, the config, the history. Every difference is
printed as one line "ASPECT KEY: docker=... farm=..."; differences kept on purpose are listed in
KEPT below (each narrow, each explained in README.md) and are printed as "kept (REASON)" without
failing. Exit status: 0 when nothing else differs, 1 otherwise, 2 on a usage or read error.

Not compared, by design (README.md, "What is not compared"): mtimes, atimes and every
timestamp of the config and history (`created`), user/group names in tar headers (only the
numeric ids count), the tar entry order, pax/xattr records, the mode of whiteout files (only
their names mean something), file-type bits in a tar header's mode field (the entry type says
it), image IDs, layer digests and the config's `rootfs.diff_ids` (they hash all of the above).
"""

import collections
import fnmatch
import hashlib
import io
import json
import posixpath
import re
import sys
import tarfile

# ------------------------------------------------------------------------------------------
# Reading a saved image

Entry = collections.namedtuple("Entry", "type mode uid gid size digest link")
# type: "file", "dir", "symlink", "hardlink" (resolved to its target's attributes: see below),
# "char", "block", "fifo", "whiteout", "opaque".


def norm_path(name):
    """Tar entry name -> path relative to the root, no leading "./" or "/" or trailing "/"."""
    while name.startswith("./"):
        name = name[2:]
    name = name.strip("/")
    return "." if name in ("", ".") else name


def entry_type(ti):
    if ti.isreg():
        return "file"
    if ti.isdir():
        return "dir"
    if ti.issym():
        return "symlink"
    if ti.islnk():
        return "hardlink"
    if ti.ischr():
        return "char"
    if ti.isblk():
        return "block"
    if ti.isfifo():
        return "fifo"
    return "other:" + repr(ti.type)


def read_layer(data):
    """Layer tar bytes -> {path: Entry}, and the hard-link groups {path: frozenset(paths)}."""
    entries = {}
    links = {}  # path -> path it is a hard link to (within this layer)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as t:
        for ti in t:
            path = norm_path(ti.name)
            base = path.rsplit("/", 1)[-1]
            if base == ".wh..wh..opq":
                entries[path] = Entry("opaque", None, None, None, None, None, None)
                continue
            if base.startswith(".wh."):
                entries[path] = Entry("whiteout", None, None, None, None, None, None)
                continue
            kind = entry_type(ti)
            digest = None
            if kind == "file":
                digest = hashlib.sha256(t.extractfile(ti).read()).hexdigest()[:16]
            link = ti.linkname if kind == "symlink" else None
            if kind == "hardlink":
                links[path] = norm_path(ti.linkname)
            size = ti.size if kind == "file" else None
            entries[path] = Entry(kind, ti.mode & 0o7777, ti.uid, ti.gid, size, digest, link)
    groups = {}
    for path, target in links.items():
        members = groups.get(target, frozenset([target])) | {path}
        for m in members:
            groups[m] = members
        if target in entries:  # a hard link carries its target's attributes
            entries[path] = entries[target]
    return entries, groups


class Image:
    def __init__(self, path):
        with tarfile.open(path, mode="r:*") as t:
            files = {norm_path(m.name): m for m in t.getmembers()}

            def read(name):
                ti = files[norm_path(posixpath.normpath(name))]
                while ti.issym():  # `docker save` links a layer it already wrote
                    target = posixpath.join(posixpath.dirname(norm_path(ti.name)), ti.linkname)
                    ti = files[norm_path(posixpath.normpath(target))]
                return t.extractfile(ti).read()

            manifest = json.loads(read("manifest.json"))
            if len(manifest) != 1:
                raise ValueError("%s: %d images in the archive, want 1" % (path, len(manifest)))
            self.config = json.loads(read(manifest[0]["Config"]))
            self.layers = [read_layer(read(l)) for l in manifest[0]["Layers"]]


def rootfs(image):
    """Applies the layers: {path: Entry} of the final file system, plus hard-link groups."""
    fs, groups = {}, {}
    for entries, layer_groups in image.layers:
        for path, e in sorted(entries.items()):
            parent = path.rsplit("/", 1)[0] if "/" in path else "."
            if e.type == "opaque":
                for p in [p for p in fs if p.startswith(parent + "/") or parent == "."]:
                    if p != ".":
                        fs.pop(p)
                        groups.pop(p, None)
            elif e.type == "whiteout":
                gone = (parent + "/" if parent != "." else "") + path.rsplit("/", 1)[-1][4:]
                for p in [p for p in fs if p == gone or p.startswith(gone + "/")]:
                    fs.pop(p)
                    groups.pop(p, None)
        for path, e in sorted(entries.items()):
            if e.type in ("opaque", "whiteout"):
                continue
            if fs.get(path, Entry(*[None] * 7)).type == "dir" and e.type != "dir":
                for p in [p for p in fs if p.startswith(path + "/")]:
                    fs.pop(p)
            fs[path] = e
            groups.pop(path, None)
        groups.update(layer_groups)
    return fs, groups


# ------------------------------------------------------------------------------------------
# Differences

Diff = collections.namedtuple("Diff", "aspect key docker farm")


def fmt_entry(e):
    if e is None:
        return "absent"
    if e.type in ("whiteout", "opaque"):
        return e.type
    parts = [e.type, "%04o" % e.mode, "%d:%d" % (e.uid, e.gid)]
    if e.type == "file":
        parts.append("%dB sha256:%s" % (e.size, e.digest))
    if e.link is not None:
        parts.append("-> " + e.link)
    return " ".join(parts)


def compare_entries(aspect, docker, farm):
    out = []
    for path in sorted(set(docker) | set(farm)):
        d, f = docker.get(path), farm.get(path)
        if d != f:
            out.append(Diff(aspect, path, fmt_entry(d), fmt_entry(f)))
    return out


def compare_rootfs(docker, farm):
    (dfs, dgroups), (ffs, fgroups) = rootfs(docker), rootfs(farm)
    out = compare_entries("rootfs", dfs, ffs)
    for path in sorted(set(dgroups) | set(fgroups)):
        d = sorted(dgroups.get(path, [path]))
        f = sorted(fgroups.get(path, [path]))
        if d != f:
            out.append(Diff("rootfs-hardlinks", path, " ".join(d), " ".join(f)))
    return out


def compare_layers(docker, farm):
    out = []
    if len(docker.layers) != len(farm.layers):
        out.append(Diff("layers", "count", len(docker.layers), len(farm.layers)))
    for i, (d, f) in enumerate(zip(docker.layers, farm.layers)):
        out.extend(compare_entries("layer[%d]" % i, d[0], f[0]))
        for path in sorted(set(d[1]) | set(f[1])):
            dg = sorted(d[1].get(path, [path]))
            fg = sorted(f[1].get(path, [path]))
            if dg != fg:
                out.append(Diff("layer[%d]-hardlinks" % i, path, " ".join(dg), " ".join(fg)))
    return out


CONFIG_KEYS = ["Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes",
               "Labels", "StopSignal", "Healthcheck", "Shell", "OnBuild", "ArgsEscaped"]
IMAGE_KEYS = ["architecture", "os", "variant", "author"]


def absent_if_empty(v):
    # Go writes a nil slice or map as null, or leaves it out (omitempty): the same value.
    return None if v in (None, [], {}, "", False) else v


def compare_config(docker, farm):
    out = []
    dc, fc = docker.config.get("config") or {}, farm.config.get("config") or {}
    for k in CONFIG_KEYS:
        d, f = absent_if_empty(dc.get(k)), absent_if_empty(fc.get(k))
        if d != f:
            out.append(Diff("config", k, json.dumps(d), json.dumps(f)))
    for k in sorted(set(dc) | set(fc)):
        if k not in CONFIG_KEYS and absent_if_empty(dc.get(k)) != absent_if_empty(fc.get(k)):
            out.append(Diff("config", k, json.dumps(dc.get(k)), json.dumps(fc.get(k))))
    for k in IMAGE_KEYS:
        d, f = absent_if_empty(docker.config.get(k)), absent_if_empty(farm.config.get(k))
        if d != f:
            out.append(Diff("image", k, json.dumps(d), json.dumps(f)))
    return out


def compare_history(docker, farm):
    out = []
    dh, fh = docker.config.get("history") or [], farm.config.get("history") or []
    if len(dh) != len(fh):
        out.append(Diff("history", "count", len(dh), len(fh)))
    for i, (d, f) in enumerate(zip(dh, fh)):
        for k in ("created_by", "empty_layer", "comment", "author"):
            if absent_if_empty(d.get(k)) != absent_if_empty(f.get(k)):
                out.append(Diff("history[%d]" % i, k, json.dumps(d.get(k)),
                                json.dumps(f.get(k))))
    return out


# ------------------------------------------------------------------------------------------
# Failed builds: the Dockerfile line each engine blames. Docker 20.10 names a line only for
# parse errors, so the harness finds Docker's line itself (the shortest prefix of the
# Dockerfile that fails with the same error: conformance_test.sh, docker_fail_line) and passes
# it in; farm's is read from its output ("./Dockerfile:12" above the error block, or
# "Dockerfile:12:3: " in front of a front-end error).

FARM_LINE_PATTERNS = [
    re.compile(r"^\S*Dockerfile\S*?:(\d+)(?:-(\d+))?\s*$", re.M),  # "./Dockerfile:3-5"
    re.compile(r"\S*Dockerfile\S*?:(\d+):\d+: "),                 # "Dockerfile:3:1: ..."
]


def farm_failed_lines(log):
    """The first and last line of the instruction farm blames, or None."""
    for p in FARM_LINE_PATTERNS:
        m = p.search(log)
        if m:
            first = int(m.group(1))
            last = int(m.group(2)) if m.lastindex and m.lastindex >= 2 and m.group(2) else first
            return first, last
    return None


def compare_failure(docker_line, farm_log):
    """Docker's line (the end of the shortest failing prefix) must be within farm's instruction:
    a continued instruction fails in Docker only once its last line is there."""
    d = None if docker_line in ("", "none") else int(docker_line)
    f = farm_failed_lines(farm_log)
    if d is None or f is None or not f[0] <= d <= f[1]:
        shown = None if f is None else (f[0] if f[0] == f[1] else "%d-%d" % f)
        return [Diff("failure", "line", d, shown)]
    return []


def outcome(exit_status):
    return "succeeded" if exit_status == "0" else "failed"


# ------------------------------------------------------------------------------------------
# Differences kept on purpose: each names its README.md section. Keep them narrow: a case
# pattern, an aspect pattern, a key pattern, and when needed the exact values.

class Kept(collections.namedtuple("Kept", "reason case aspect key docker farm check")):
    """A difference kept on purpose: `reason` names its section in README.md. `case`, `aspect`,
    `key`, `docker` and `farm` are fnmatch patterns (None: any); `check`, if given, is a
    function of the Diff that must also hold (to say exactly how the values may differ)."""

    def __new__(cls, reason, case, aspect, key="*", docker=None, farm=None, check=None):
        return super().__new__(cls, reason, case, aspect, key, docker, farm, check)


def same_arg_names(diff):
    """ARG history: the same names, only the values differ (Docker 20.10 writes the Dockerfile's
    default, current BuildKit the value the build used, so farm's values may hold spaces)."""
    names = [w.split("=", 1)[0] for w in json.loads(diff.docker).split()[1:]]
    pattern = "ARG " + " ".join(re.escape(n) + "=.*" for n in names)
    return re.fullmatch(pattern, json.loads(diff.farm)) is not None


def run_args_deduplicated(diff):
    """RUN history: Docker 20.10 lists a redeclared ARG again; farm, as current BuildKit, once,
    where first declared, with its last value. Dedupe Docker's list and compare."""
    def split(created_by):
        words = json.loads(created_by).split(" ")
        if not words[1].startswith("|"):
            return [], words
        n = int(words[1][1:])
        return words[2:2 + n], words[:1] + words[2 + n:]
    d_args, d_rest = split(diff.docker)
    f_args, f_rest = split(diff.farm)
    dedup = collections.OrderedDict()
    for a in d_args:
        k, v = a.split("=", 1)
        dedup[k] = v
    return d_rest == f_rest and f_args == ["%s=%s" % kv for kv in dedup.items()]


def chmod_special_bits_dropped(diff):
    """COPY --chmod: Docker 20.10 drops setuid/setgid/sticky from the octal mode; the rest is
    the same."""
    d, f = diff.docker.split(), diff.farm.split()
    dm, fm = int(d[1], 8), int(f[1], 8)
    return d[0] == f[0] and d[2:] == f[2:] and fm & 0o7000 and dm == fm & 0o777


def only_groups_differ(diff):
    """`id` output: the same uid and gid, other supplementary groups."""
    return diff.docker.split()[2] == diff.farm.split()[2]  # owner unchanged; size/digest differ


MOUNT_STUBS = {
    "run-mount-bind": ["ctx", "d", "base-etc"],
    "run-mount-cache": ["cache", "var", "var/cache", "var/cache/app", "scratch"],
    "run-mount-secret": ["run", "run/secrets", "custom"],
    # the agent socket's stub went in /tmp: Docker's layer has /tmp (copied up), as it was
    "run-mount-ssh": ["run", "run/buildkit", "tmp"],
}

KEPT = [
    # ADD --chown on a local archive: farm chowns the extracted entries (BuildKit >= 0.23).
    Kept("add-chown-archive", "add-archive-[tgbx]*", "*", "owned/?*",
         docker="* 1234:5678*", farm="* 1000:1001*"),
    # zstd archives: extracted by farm (and current Docker); Docker 20.10 copies the file.
    Kept("add-zstd-archive", "add-archive-zstd", "rootfs*", "extracted/*"),
    Kept("add-zstd-archive", "add-archive-zstd", "layer[[]6[]]*", "extracted/*"),
    # ARG's history: the value the build used (current BuildKit), not the Dockerfile's default.
    Kept("arg-history-value", "*", "history[[]*[]]", "created_by", docker='"ARG *',
         farm='"ARG *', check=same_arg_names),
    # RUN's history lists a redeclared ARG once (BuildKit e2be8f768).
    Kept("run-history-arg-once", "*", "history[[]*[]]", "created_by", docker='"RUN |*',
         farm='"RUN |*', check=run_args_deduplicated),
    # COPY --chmod keeps setuid/setgid/sticky (moby/buildkit#3920, fixed in fsutil).
    Kept("chmod-special-bits", "copy-chmod", "*", "*", check=chmod_special_bits_dropped),
    # A context file named with the escape character: Docker's context transfer does not send it.
    Kept("backslash-file-name", "copy-backslash-name", "outcome", "build",
         docker="failed", farm="succeeded"),
    # COPY --chown naming a user the image does not have: farm fails, Docker uses root.
    Kept("chown-unknown-user", "copy-chown-unknown-user", "outcome", "build",
         docker="succeeded", farm="failed"),
    # ${v-w}, ${v#p}, ${v/p/r}...: newer BuildKit syntax Docker 20.10 rejects.
    Kept("newer-expansion-syntax", "expansion-modifiers-newer", "outcome", "build",
         docker="failed", farm="succeeded"),
    # COPY of several sources to a destination without "/": farm fails as the reference says.
    Kept("several-sources-file-destination", "fail-copy-multi-no-slash", "outcome", "build",
         docker="succeeded", farm="failed"),
    # RUN on a base without /dev, /proc, /sys, /etc: runc's mount points stay in Docker's layer.
    Kept("runtime-mount-points", "from-scratch-run", "*", "dev", docker="dir 0755 0:0",
         farm="absent"),
    Kept("runtime-mount-points", "from-scratch-run", "*", "proc", docker="dir 0755 0:0",
         farm="absent"),
    Kept("runtime-mount-points", "from-scratch-run", "*", "sys", docker="dir 0755 0:0",
         farm="absent"),
    Kept("runtime-mount-points", "from-scratch-run", "*", "etc", docker="dir 0755 0:0",
         farm="absent"),
    # Supplementary groups include the primary group (BuildKit a0ef27c59).
    Kept("supplementary-groups", "user-supplementary-groups", "*", "tmp/*.txt",
         check=only_groups_differ),
    # COPY --from copies FIFOs (current fsutil); Docker 20.10 skips them.
    Kept("copy-fifo", "copy-from-stage", "*", "out/fifo", docker="absent", farm="fifo *"),
] + [
    # RUN --mount targets: BuildKit >= 0.11 removes the directories it made for them
    # (677897377); Docker 20.10 leaves them in the layer.
    Kept("mount-stubs", case, "*", path, docker="dir * 0:0", farm="absent")
    for case, paths in MOUNT_STUBS.items() for path in paths
]


def kept_reason(case, diff):
    for k in KEPT:
        if not fnmatch.fnmatchcase(case, k.case):
            continue
        if not fnmatch.fnmatchcase(diff.aspect, k.aspect):
            continue
        if not fnmatch.fnmatchcase(str(diff.key), k.key):
            continue
        if k.docker is not None and not fnmatch.fnmatchcase(str(diff.docker), k.docker):
            continue
        if k.farm is not None and not fnmatch.fnmatchcase(str(diff.farm), k.farm):
            continue
        if k.check is not None and not k.check(diff):
            continue
        return k.reason
    return None


def report(case, diffs):
    failed = 0
    for d in diffs:
        reason = kept_reason(case, d)
        line = "%s: %s %s: docker=%s farm=%s" % (case, d.aspect, d.key, d.docker, d.farm)
        if reason:
            print("  kept (%s) %s" % (reason, line))
        else:
            print("  DIFF " + line)
            failed += 1
    return failed


def main(argv):
    if len(argv) != 5 or argv[1] not in ("image", "failure", "outcome"):
        sys.stderr.write(__doc__)
        return 2
    mode, case, docker_path, farm_path = argv[1:]
    try:
        if mode == "image":
            docker, farm = Image(docker_path), Image(farm_path)
            diffs = (compare_rootfs(docker, farm) + compare_layers(docker, farm) +
                     compare_config(docker, farm) + compare_history(docker, farm))
        elif mode == "outcome":
            diffs = [Diff("outcome", "build", outcome(docker_path), outcome(farm_path))]
        else:
            with open(farm_path, errors="replace") as f:
                diffs = compare_failure(docker_path, f.read())
    except (OSError, ValueError, KeyError, tarfile.TarError) as e:
        sys.stderr.write("%s: cannot compare: %s\n" % (case, e))
        return 2
    return 1 if report(case, diffs) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
