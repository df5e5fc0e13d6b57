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
config.excludes = ['Inputs', 'fixtures', 'fuzz', 'lit.cfg.py', 'write_ppm.py', 'top.py', 'gradcheck.c', 'png.py', 'kill_save.py', 'threads.c', 'write_idx.py', 'infer_main.c']
config.excludes = ['Inputs', 'fixtures', 'fuzz']
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.cnnc_obj_root, 'test')

config.substitutions.append(('%cnnc', config.cnnc))
config.substitutions.append(('%examples', os.path.join(config.cnnc_src_root, 'examples')))
config.substitutions.append(('%python', '/usr/bin/python3'))
config.substitutions.append(('%cflags', getattr(config, 'cflags', '')))
config.substitutions.append(('%objroot', config.cnnc_obj_root))
config.substitutions.append(('%tools', os.path.join(config.cnnc_src_root, 'tools')))
config.environment['PATH'] = os.pathsep.join([config.llvm_tools_dir, config.environment.get('PATH', os.environ.get('PATH', ''))])
for var in ('ASAN_OPTIONS', 'UBSAN_OPTIONS', 'HOME', 'TMPDIR'):
    if var in os.environ:
        config.environment[var] = os.environ[var]
