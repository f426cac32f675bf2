"""cc_grpc_proto: C++ code generation with the system protoc and grpc_cpp_plugin.

Native proto_library wants @com_google_protobuf, which we cannot fetch offline, so a genrule
runs Debian's protoc. All .proto files live under protos/ and import each other relative to
it (e.g. `import "google/rpc/status.proto";`); generated headers are included the same way.
"""

def cc_grpc_proto(name, srcs, proto_deps = [], deps = [], grpc = True, visibility = None):
    """Generates and compiles C++ for `srcs`.

    Args:
      name: the cc_library's name.
      srcs: .proto files in this package (paths relative to protos/).
      proto_deps: other .proto files in this package that `srcs` import.
      deps: the cc_grpc_proto targets generated from `proto_deps`.
      grpc: also generate gRPC service stubs.
      visibility: of the cc_library.
    """
    outs = []
    for s in srcs:
        base = s[:-len(".proto")]
        outs.append(base + ".pb.h")
        outs.append(base + ".pb.cc")
        if grpc:
            outs.append(base + ".grpc.pb.h")
            outs.append(base + ".grpc.pb.cc")
    pkg = native.package_name()
    grpc_flags = ""
    if grpc:
        grpc_flags = (" --grpc_out=$(GENDIR)/" + pkg +
                      " --plugin=protoc-gen-grpc=$(location @system_tools//:grpc_cpp_plugin)")
    native.genrule(
        name = name + "_codegen",
        srcs = srcs + proto_deps,
        outs = outs,
        tools = [
            "@system_tools//:protoc",
            "@system_tools//:grpc_cpp_plugin",
        ],
        cmd = ("$(location @system_tools//:protoc) -I" + pkg + " -I/usr/include" +
               " --cpp_out=$(GENDIR)/" + pkg + grpc_flags + " " +
               " ".join(["$(location %s)" % s for s in srcs])),
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        includes = ["."],
        copts = ["-Wno-unused-parameter"],
        deps = deps + [
            "//third_party:grpc",
            "//third_party:protobuf",
        ],
        visibility = visibility,
    )
