{
  "variables": {
    # libvfio-user install prefix: $VPHI_LVU_PREFIX, else ../.cache/lvu/prefix
    # (relative to this directory; gyp runs <!() commands from here).
    "lvu_prefix%": "<!(node -p \"require('path').resolve(process.env.VPHI_LVU_PREFIX || '../.cache/lvu/prefix')\")",
  },
  "targets": [
    {
      "target_name": "vphi_native",
      "sources": [
        "addon.cc",
        "callbacks.cc",
        "context.cc",
        "dma.cc",
        "poll.cc",
        "socket.cc",
        "wire.cc",
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<(lvu_prefix)/include",
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-Wall", "-Wextra"],
      "libraries": [
        "-L<(lvu_prefix)/lib",
        "-lvfio-user",
        "-Wl,-rpath,<(lvu_prefix)/lib",
      ],
    }
  ]
}
