# lit configuration for every suite under test/. A test is a .cnn (or .test)
# file with `# RUN:` lines; %cnnc is the compiler under test, %examples the
# examples/ folder. The paths come from the lit.site.cfg.py CMake writes.
import os
import lit.formats

site = lit_config.params.get('site')
if site and not getattr(config, 'cnnc', None):
    lit_config.load_config(config, site)

config.name = 'cnnc'
config.test_format = lit.formats.ShTest(execute_external=True)
config.suffixes = ['.cnn', '.test']
config.excludes = ['Inputs', 'fixtures', 'fuzz']
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.cnnc_obj_root, 'test')

# --param target=avx2: the same tests with the code built for AVX2 + FMA
# (-mcpu=haswell: 16 registers of 8 floats, the other register blocks), on a
# host that runs it; their outputs go to a folder of their own.
cnnc = config.cnnc
if lit_config.params.get('target') == 'avx2':
    cnnc += ' -mcpu=haswell'
    config.test_exec_root = os.path.join(config.cnnc_obj_root, 'test-avx2')
    with open('/proc/cpuinfo') as f:
        if ' avx2 ' not in f.read():
            config.unsupported = True

config.substitutions.append(('%cnnc', cnnc))
config.substitutions.append(('%examples', os.path.join(config.cnnc_src_root, 'examples')))
config.substitutions.append(('%python', '/usr/bin/python3'))
config.substitutions.append(('%cflags', getattr(config, 'cflags', '')))
config.substitutions.append(('%objroot', config.cnnc_obj_root))
config.substitutions.append(('%fmnist', '/usr/share/datasets/fashion-mnist'))
# Open MPI, for test/mpi: as root, on more ranks than cores; LeakSanitizer
# would report Open MPI's own allocations at exit
config.substitutions.append(('%mpirun', 'env ASAN_OPTIONS=detect_leaks=0 mpirun --allow-run-as-root --oversubscribe'))
if getattr(config, 'mpi', False):
    config.available_features.add('mpi')
config.substitutions.append(('%onnxdata', '/usr/include/onnx/backend/test/data'))
config.substitutions.append(('%tools', os.path.join(config.cnnc_src_root, 'tools')))
config.environment['PATH'] = os.pathsep.join([config.llvm_tools_dir, config.environment.get('PATH', os.environ.get('PATH', ''))])
for var in ('ASAN_OPTIONS', 'UBSAN_OPTIONS', 'HOME', 'TMPDIR'):
    if var in os.environ:
        config.environment[var] = os.environ[var]
