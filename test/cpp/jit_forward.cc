// Runs a TorchScript feature extractor with LibTorch alone, as a C++ user would (no soco-train, no
// Python): jit_forward MODEL.pt INPUT.f32 N C H W OUTDIR reads the float32 images, runs forward and
// writes each output feature map to OUTDIR/<name>.f32, printing "<name> <d0> <d1> ..." per output.
#include <ATen/core/ivalue.h>
#include <ATen/ops/from_blob.h>
#include <torch/csrc/jit/serialization/import.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 8) {
    std::cerr << "usage: jit_forward MODEL.pt INPUT.f32 N C H W OUTDIR\n";
    return 2;
  }
  try {
    torch::jit::Module m = torch::jit::load(argv[1]);
    std::vector<int64_t> shape{std::stoll(argv[3]), std::stoll(argv[4]), std::stoll(argv[5]), std::stoll(argv[6])};
    std::vector<float> input(shape[0] * shape[1] * shape[2] * shape[3]);
    std::ifstream in(argv[2], std::ios::binary);
    if (!in.read(reinterpret_cast<char*>(input.data()), input.size() * sizeof(float))) {
      std::cerr << argv[2] << ": expected " << input.size() << " float32 values\n";
      return 1;
    }
    c10::IValue out = m.forward({at::from_blob(input.data(), shape, at::kFloat)});
    for (const auto& kv : out.toGenericDict()) {
      const std::string name = kv.key().toStringRef();
      at::Tensor t = kv.value().toTensor().contiguous();
      std::ofstream(std::string(argv[7]) + "/" + name + ".f32", std::ios::binary)
          .write(reinterpret_cast<const char*>(t.data_ptr<float>()), t.numel() * sizeof(float));
      std::cout << name;
      for (int64_t d : t.sizes()) std::cout << ' ' << d;
      std::cout << '\n';
    }
  } catch (const std::exception& e) {
    std::cerr << e.what() << '\n';
    return 1;
  }
  return 0;
}
