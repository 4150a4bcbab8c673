{
  "targets": [
    {
      "target_name": "kova_libvirt",
      "sources": ["src/addon.cc", "src/connection.cc", "src/domain.cc", "src/errors.cc", "src/events.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "libraries": ["<!@(pkg-config --libs libvirt)"],
      "cflags_cc": ["<!@(pkg-config --cflags libvirt)", "-std=c++17", "-fexceptions", "-Wall", "-Wextra"],
      "cflags_cc!": ["-fno-exceptions"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"]
    }
  ]
}
