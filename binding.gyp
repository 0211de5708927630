{
  # node-gyp build of the same sources as CMakeLists.txt, used by `npm run prebuilds` (prebuildify).
  # The LibTorch and its flags come from scripts/libtorch.js, as for CMake; the variable records
  # its choice in build/libtorch.json (what torch.buildInfo() reports) and prints the line.
  "variables": {"libtorch": "<!(node scripts/libtorch.js record build)"},
  "targets": [
    {
      "target_name": "soco_train",
      "sources": [
        "native/addon.cc",
        "native/tensor.cc",
        "native/image.cc",
        "native/proposals.cc",
        "native/dist.cc",
        "native/torchscript.cc",
        "native/io.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node scripts/libtorch.js include)"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_CPP_EXCEPTIONS_ALL", "NODE_ADDON_API_DISABLE_DEPRECATED", "<!@(node scripts/libtorch.js defines)"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O2", "<!@(node scripts/libtorch.js cflags)"],
      "libraries": ["<!@(node scripts/libtorch.js libs)", "-ljpeg", "-lpng", "-lz", "-lwebp", "-ldeflate", "-ldl"]
    }
  ]
}
