/**
 * SSD inference with MindSpore's C++ API on Ascend 310 / 310P (or CPU, GPU): loads the MINDIR written by
 * export.py (network + box decoding, batch 1), runs every image of a folder and writes the raw outputs
 * per image (layout in inc/utils.h and docs/interfaces.md); postprocess.py turns them into COCO mAP.
 *
 * usage: main --mindir_path=FILE --dataset_path=DIR [--device_type=Ascend|CPU|GPU] [--device_id=0]
 *             [--cpu_dvpp=CPU|DVPP] [--aipp_path=aipp.cfg] [--image_height=300 --image_width=300]
 *             [--result_path=./result_Files] [--time_path=./time_Result]
 *
 * Pre-processing matches evaluation (src/data/augment.py eval_transform): decode to RGB, bilinear resize
 * to the network input, subtract the ImageNet mean and divide by its std (0..255 scale), HWC to CHW.
 * With --cpu_dvpp=DVPP (Ascend only, JPEG only) the DVPP decodes and resizes on the device and the AIPP
 * configuration (aipp.cfg) converts YUV to RGB and normalises inside the model.
 */
#include <sys/time.h>

#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "include/api/context.h"
#include "include/api/model.h"
#include "include/api/status.h"
#include "include/api/types.h"
#include "include/dataset/execute.h"
#ifdef USE_MS_LITE
#include "include/dataset/vision_lite.h"
#else
#include "include/api/serialization.h"
#include "include/dataset/vision.h"
#include "include/dataset/vision_ascend.h"
#endif
#include "inc/utils.h"

namespace {

namespace ds = mindspore::dataset;

// The ImageNet statistics of src/data/augment.py (MEAN_RGB, STD_RGB), on 0..255 pixel values.
const std::vector<float> kMeanRgb = {123.675f, 116.28f, 103.53f};
const std::vector<float> kStdRgb = {58.395f, 57.12f, 57.375f};

const char kUsage[] =
    "usage: main --mindir_path=FILE --dataset_path=DIR [--device_type=Ascend|CPU|GPU] [--device_id=0] "
    "[--cpu_dvpp=CPU|DVPP] [--aipp_path=aipp.cfg] [--image_height=300 --image_width=300] "
    "[--result_path=./result_Files] [--time_path=./time_Result]";

int Fail(const std::string &message) {
  std::cerr << "error: " << message << std::endl;
  return 1;
}

double NowMs() {
  struct timeval now;
  gettimeofday(&now, nullptr);
  return now.tv_sec * 1000.0 + now.tv_usec / 1000.0;
}

// The device the model runs on; nullptr (and error) for an unknown device type.
std::shared_ptr<mindspore::Context> MakeContext(const std::string &device_type, uint32_t device_id,
                                                const std::string &aipp_path, std::string *error) {
  auto context = std::make_shared<mindspore::Context>();
  auto &devices = context->MutableDeviceInfo();
  if (device_type == "Ascend") {
    auto ascend = std::make_shared<mindspore::AscendDeviceInfo>();
    ascend->SetDeviceID(device_id);
    if (!aipp_path.empty()) {
      ascend->SetInsertOpConfigPath(aipp_path);
    }
    devices.push_back(ascend);
  } else if (device_type == "GPU") {
    auto gpu = std::make_shared<mindspore::GPUDeviceInfo>();
    gpu->SetDeviceID(device_id);
    devices.push_back(gpu);
  } else if (device_type == "CPU") {
    devices.push_back(std::make_shared<mindspore::CPUDeviceInfo>());
  } else {
    *error = "--device_type must be Ascend, GPU or CPU, got '" + device_type + "'";
    return nullptr;
  }
  return context;
}

// MindSpore loads the MINDIR into a Graph and builds a GraphCell; MindSpore Lite builds from the file.
mindspore::Status BuildModel(const std::string &mindir_path, const std::shared_ptr<mindspore::Context> &context,
                             mindspore::Model *model) {
#ifdef USE_MS_LITE
  return model->Build(mindir_path, mindspore::ModelType::kMindIR, context);
#else
  mindspore::Graph graph;
  mindspore::Status status = mindspore::Serialization::Load(mindir_path, mindspore::ModelType::kMindIR, &graph);
  if (status != mindspore::kSuccess) {
    return status;
  }
  return model->Build(mindspore::GraphCell(graph), context);
#endif
}

// Decode + resize + normalise + HWC2CHW on the CPU, or DVPP decode + resize on the Ascend device.
std::shared_ptr<ds::Execute> MakePreprocess(bool dvpp, int height, int width, uint32_t device_id) {
  if (dvpp) {
#ifdef USE_MS_LITE
    (void)device_id;
    return nullptr;
#else
    const std::vector<uint32_t> size = {static_cast<uint32_t>(height), static_cast<uint32_t>(width)};
    std::vector<std::shared_ptr<ds::TensorTransform>> ops = {std::make_shared<ds::vision::DvppDecodeResizeJpeg>(size)};
    return std::make_shared<ds::Execute>(ops, ds::MapTargetDevice::kAscend310, device_id);
#endif
  }
  const std::vector<int32_t> size = {height, width};
  std::vector<std::shared_ptr<ds::TensorTransform>> ops = {
      std::make_shared<ds::vision::Decode>(), std::make_shared<ds::vision::Resize>(size),
      std::make_shared<ds::vision::Normalize>(kMeanRgb, kStdRgb), std::make_shared<ds::vision::HWC2CHW>()};
  return std::make_shared<ds::Execute>(ops);
}

// The network input size: from a [1, 3, H, W] model input, else --image_height/--image_width.
bool InputSize(const mindspore::MSTensor &input, const ArgMap &args, bool dvpp, int *height, int *width,
               std::string *error) {
  const std::vector<int64_t> shape = input.Shape();
  if (!dvpp && shape.size() == 4) {
    if (shape[0] != 1 || shape[1] != 3) {
      *error = "the model input must be [1, 3, H, W] (export with --batch_size=1)";
      return false;
    }
    *height = static_cast<int>(shape[2]);
    *width = static_cast<int>(shape[3]);
    return true;
  }
  *height = std::stoi(GetArg(args, "image_height", "300"));
  *width = std::stoi(GetArg(args, "image_width", "300"));
  return true;
}

// Runs one image; fills error and returns false on failure.
bool InferImage(const std::string &file, ds::Execute *preprocess, mindspore::Model *model,
                const mindspore::MSTensor &model_input, const std::string &result_path, double *elapsed_ms,
                std::string *error) {
  mindspore::MSTensor image;
  if (!ReadFileToTensor(file, &image)) {
    *error = "cannot read " + file;
    return false;
  }
  mindspore::MSTensor ready;
  if ((*preprocess)(image, &ready) != mindspore::kSuccess) {
    *error = "cannot decode or pre-process " + file;
    return false;
  }
  std::vector<mindspore::MSTensor> inputs;
  inputs.emplace_back(model_input.Name(), model_input.DataType(), model_input.Shape(), ready.Data().get(),
                      ready.DataSize());
  std::vector<mindspore::MSTensor> outputs;
  const double start = NowMs();
  const mindspore::Status status = model->Predict(inputs, &outputs);
  *elapsed_ms = NowMs() - start;
  if (status != mindspore::kSuccess) {
    *error = "inference failed on " + file + ": " + status.ToString();
    return false;
  }
  return WriteOutputs(result_path, file, outputs, error);
}

}  // namespace

int main(int argc, char **argv) {
  ArgMap args;
  std::string error;
  if (!ParseArgs(argc, argv, &args, &error)) {
    return Fail(error + "\n" + kUsage);
  }
  const std::string mindir_path = GetArg(args, "mindir_path", "");
  const std::string dataset_path = GetArg(args, "dataset_path", "");
  const std::string device_type = GetArg(args, "device_type", "Ascend");
  const uint32_t device_id = static_cast<uint32_t>(std::stoul(GetArg(args, "device_id", "0")));
  const bool dvpp = GetArg(args, "cpu_dvpp", "CPU") == "DVPP";
  const std::string result_path = GetArg(args, "result_path", "./result_Files");
  const std::string time_path = GetArg(args, "time_path", "./time_Result");
  if (mindir_path.empty() || dataset_path.empty()) {
    return Fail(std::string("--mindir_path and --dataset_path are required\n") + kUsage);
  }
  if (dvpp && device_type != "Ascend") {
    return Fail("--cpu_dvpp=DVPP needs --device_type=Ascend");
  }
  const std::vector<std::string> images = ListImages(dataset_path);
  if (images.empty()) {
    return Fail("no JPEG, PNG or BMP images in " + dataset_path);
  }
  if (!MakeDirs(result_path)) {
    return Fail("cannot create " + result_path);
  }
  auto context = MakeContext(device_type, device_id, dvpp ? GetArg(args, "aipp_path", "./aipp.cfg") : "", &error);
  if (context == nullptr) {
    return Fail(error);
  }
  mindspore::Model model;
  const mindspore::Status built = BuildModel(mindir_path, context, &model);
  if (built != mindspore::kSuccess) {
    return Fail("cannot load or build " + mindir_path + ": " + built.ToString());
  }
  const std::vector<mindspore::MSTensor> model_inputs = model.GetInputs();
  int height = 0;
  int width = 0;
  if (model_inputs.size() != 1 || !InputSize(model_inputs[0], args, dvpp, &height, &width, &error)) {
    return Fail(error.empty() ? "the model must have exactly one input (export it with export.py)" : error);
  }
  const std::shared_ptr<ds::Execute> preprocess = MakePreprocess(dvpp, height, width, device_id);
  if (preprocess == nullptr) {
    return Fail("DVPP pre-processing needs MindSpore (MINDSPORE_PATH), not MindSpore Lite");
  }
  double total_ms = 0.0;
  for (const std::string &file : images) {
    double elapsed_ms = 0.0;
    if (!InferImage(file, preprocess.get(), &model, model_inputs[0], result_path, &elapsed_ms, &error)) {
      return Fail(error);
    }
    total_ms += elapsed_ms;
    std::cout << "inferred " << file << " in " << std::fixed << std::setprecision(2) << elapsed_ms << " ms"
              << std::endl;
  }
  std::ostringstream summary;
  summary << "NN inference cost average time: " << std::fixed << std::setprecision(3)
          << total_ms / images.size() << " ms of infer_count " << images.size();
  std::cout << summary.str() << std::endl;
  if (!WriteTiming(time_path, summary.str())) {
    return Fail("cannot write the timing file in " + time_path);
  }
  return 0;
}
