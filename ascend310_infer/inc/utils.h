/**
 * Helpers of the SSD inference app: command line, image listing, file I/O and the raw output layout.
 *
 * Output layout (docs/interfaces.md): for an image <stem>.<ext>, output i of the model is written to
 * <result_path>/<stem>_<i>.bin as the tensor's bytes (float32, little-endian, C order, no header):
 * <stem>_0.bin boxes [1, N, 4] (ymin, xmin, ymax, xmax in [0, 1]), <stem>_1.bin scores [1, N, classes].
 */
#ifndef SSD_ASCEND310_INFER_INC_UTILS_H_
#define SSD_ASCEND310_INFER_INC_UTILS_H_

#include <map>
#include <string>
#include <vector>

#include "include/api/types.h"

using ArgMap = std::map<std::string, std::string>;

// Parses "--key=value" arguments into args; on anything else returns false and fills error.
bool ParseArgs(int argc, char **argv, ArgMap *args, std::string *error);

// The value of key, or fallback when it was not given.
std::string GetArg(const ArgMap &args, const std::string &key, const std::string &fallback);

// Sorted paths of the JPEG, PNG and BMP files directly inside folder (not recursive).
std::vector<std::string> ListImages(const std::string &folder);

// The base name of path without its extension: "dir/000123.jpg" -> "000123".
std::string Stem(const std::string &path);

// Creates folder and its parents when missing; false when that fails.
bool MakeDirs(const std::string &folder);

// Reads a whole file into a uint8 tensor of shape [size]; false when it cannot be read or is empty.
bool ReadFileToTensor(const std::string &file, mindspore::MSTensor *tensor);

// Writes each output as <result_path>/<Stem(image)>_<i>.bin; outputs must be float32.
bool WriteOutputs(const std::string &result_path, const std::string &image,
                  const std::vector<mindspore::MSTensor> &outputs, std::string *error);

// Appends one line to <folder>/test_perform_static.txt (the model zoo's timing file).
bool WriteTiming(const std::string &folder, const std::string &line);

#endif  // SSD_ASCEND310_INFER_INC_UTILS_H_
