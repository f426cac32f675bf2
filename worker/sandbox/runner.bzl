"""farm-sandbox next to a binary that runs steps."""

def sandbox_runner_beside(name = "farm_sandbox"):
    """Copies //worker/sandbox:farm-sandbox into the calling package as `farm-sandbox`.

    A binary that runs steps starts it for every RUN when it sits next to it (RunSandbox in
    worker/sandbox/sandbox.cc), 12-15 ms faster than starting itself again; give the binary
    `data = [":farm_sandbox"]` so it is built with it.
    """
    native.genrule(
        name = name,
        srcs = ["//worker/sandbox:farm-sandbox"],
        outs = ["farm-sandbox"],
        cmd = "cp $< $@",
        executable = True,
    )
