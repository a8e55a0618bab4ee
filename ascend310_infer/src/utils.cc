/**
 * Helpers of the SSD inference app (see inc/utils.h). POSIX only (dirent, mkdir), so old GCC releases
 * of Ascend hosts build it without std::filesystem.
 */
#include "inc/utils.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <fstream>
#include <iterator>

namespace {

bool HasImageExtension(const std::string &name) {
  const std::string::size_type dot = name.rfind('.');
  if (dot == std::string::npos) {
    return false;
  }
  std::string ext = name.substr(dot);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp";
}

bool IsRegularFile(const std::string &path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

std::string Join(const std::string &folder, const std::string &name) {
  if (folder.empty() || folder.back() == '/') {
    return folder + name;
  }
  return folder + "/" + name;
}

}  // namespace

bool ParseArgs(int argc, char **argv, ArgMap *args, std::string *error) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const std::string::size_type eq = arg.find('=');
    if (arg.compare(0, 2, "--") != 0 || eq == std::string::npos || eq == 2) {
      *error = "unexpected argument '" + arg + "' (options are written --key=value)";
      return false;
    }
    (*args)[arg.substr(2, eq - 2)] = arg.substr(eq + 1);
  }
  return true;
}

std::string GetArg(const ArgMap &args, const std::string &key, const std::string &fallback) {
  const auto found = args.find(key);
  return found == args.end() ? fallback : found->second;
}

std::vector<std::string> ListImages(const std::string &folder) {
  std::vector<std::string> files;
  DIR *dir = opendir(folder.c_str());
  if (dir == nullptr) {
    return files;
  }
  for (struct dirent *entry = readdir(dir); entry != nullptr; entry = readdir(dir)) {
    const std::string path = Join(folder, entry->d_name);
    if (HasImageExtension(entry->d_name) && IsRegularFile(path)) {
      files.push_back(path);
    }
  }
  closedir(dir);
  std::sort(files.begin(), files.end());
  return files;
}

std::string Stem(const std::string &path) {
  const std::string::size_type slash = path.rfind('/');
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  const std::string::size_type dot = name.rfind('.');
  return dot == std::string::npos || dot == 0 ? name : name.substr(0, dot);
}

bool MakeDirs(const std::string &folder) {
  if (folder.empty()) {
    return false;
  }
  for (std::string::size_type pos = folder.find('/', 1); ; pos = folder.find('/', pos + 1)) {
    const std::string part = folder.substr(0, pos);
    if (mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) {
      return false;
    }
    if (pos == std::string::npos) {
      return true;
    }
  }
}

bool ReadFileToTensor(const std::string &file, mindspore::MSTensor *tensor) {
  std::ifstream stream(file, std::ios::binary);
  if (!stream) {
    return false;
  }
  const std::vector<char> bytes((std::istreambuf_iterator<char>(stream)), std::istreambuf_iterator<char>());
  if (bytes.empty()) {
    return false;
  }
  *tensor = mindspore::MSTensor(file, mindspore::DataType::kNumberTypeUInt8,
                                {static_cast<int64_t>(bytes.size())}, bytes.data(), bytes.size());
  return tensor->DataSize() == bytes.size();
}

bool WriteOutputs(const std::string &result_path, const std::string &image,
                  const std::vector<mindspore::MSTensor> &outputs, std::string *error) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    const mindspore::MSTensor &output = outputs[i];
    if (output.DataType() != mindspore::DataType::kNumberTypeFloat32) {
      *error = "output " + std::to_string(i) + " of the model is not float32; export it with export.py";
      return false;
    }
    const std::string path = Join(result_path, Stem(image) + "_" + std::to_string(i) + ".bin");
    std::ofstream stream(path, std::ios::binary | std::ios::trunc);
    const auto data = output.Data();
    if (!stream || data == nullptr) {
      *error = "cannot write " + path;
      return false;
    }
    stream.write(static_cast<const char *>(data.get()), static_cast<std::streamsize>(output.DataSize()));
    if (!stream) {
      *error = "cannot write " + path;
      return false;
    }
  }
  return true;
}

bool WriteTiming(const std::string &folder, const std::string &line) {
  if (!MakeDirs(folder)) {
    return false;
  }
  std::ofstream stream(Join(folder, "test_perform_static.txt"), std::ios::app);
  stream << line << "\n";
  return static_cast<bool>(stream);
}
