/* The nine factory symbols the TensorRT Python bindings (tensorrt_bindings/tensorrt.so) need from
 * libnvinfer, libnvonnxparser and libnvinfer_plugin. Each returns NULL / 0, as the real libraries
 * do when TensorRT cannot initialise, so `import tensorrt` works on a machine without TensorRT and
 * every class, enum, property and pybind11 signature of that release can be read. */
#include <stddef.h>

void *createInferBuilder_INTERNAL(void *logger, int version) { return NULL; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int version) { return NULL; }
void *createInferRuntime_INTERNAL(void *logger, int version) { return NULL; }
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version) { return NULL; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version) { return NULL; }
void *getBuilderPluginRegistry(int capability) { return NULL; }
int getNvOnnxParserVersion(void) { return 0; }
void *getPluginRegistry(void) { return NULL; }
int initLibNvInferPlugins(void *logger, const char *namespace_) { return 0; }
