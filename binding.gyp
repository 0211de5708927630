{
  # node-gyp build of the same sources as CMakeLists.txt, used by `npm run prebuilds` (prebuildify).
  # LibTorch's location comes from scripts/torch-paths.js (Debian's libtorch-dev unless Torch_DIR
  # or TORCH_ROOT points elsewhere).
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
        "<!@(node scripts/torch-paths.js include)"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_CPP_EXCEPTIONS_ALL", "NODE_ADDON_API_DISABLE_DEPRECATED", "<!@(node scripts/torch-paths.js defines)"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O2", "<!@(node scripts/torch-paths.js cflags)"],
      "libraries": ["<!@(node scripts/torch-paths.js libs)", "-ljpeg", "-lpng", "-lz", "-lwebp", "-ldeflate", "-ldl"]
    }
  ]
}
