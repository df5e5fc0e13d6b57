/*
 * fuzz_cnnw.c: libFuzzer harness for the .cnnw weights parser, against a
 * model of two tensors (conv1.weight [2x1x3x3], conv1.bias [2]), 3 outputs
 * and 5 floats of optimizer state: the weights, and version 2's sections
 * (class names, a checkpoint's training state) read too.
 */
#include <stdint.h>
#include <stdlib.h>
#include "../../runtime/cnnrt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const CnnTensor t[] = {
        {"conv1.weight", 4, {2, 1, 3, 3}, 0, 18, NULL, 0},
        {"conv1.bias", 1, {2}, 18, 2, NULL, 0},
    };
    CnnModel m = {.name = "fuzz", .ntensors = 2, .tensors = t, .params_size = 20, .outputs = 3,
                  .opt_state_size = 5};
    m.shape_hash = cnnw_shape_hash(t, 2);
    float params[20], opt[5];
    char err[512];
    cnnw_parse(data, size, "fuzz.cnnw", &m, params, err, sizeof err);
    CnnTrainState st = {.opt_state = opt};
    CnnwExtra x = {.state = &st};
    if (cnnw_parse_ex(data, size, "fuzz.cnnw", &m, params, &x, err, sizeof err))
        cnnw_extra_free(&x);
    return 0;
}
