import * as os from 'os';
import * as path from 'path';

// The Pythons the references run with. PYTHON checks torch (ops, autograd, RoIAlign, serialization,
// the model): SOCO_PYTHON, a lane's own PyTorch (e.g. the torch 2.x virtualenv), else Debian's
// /usr/bin/python3 with python3-torch (the first python3 on PATH may have no torch).
// SYSTEM_PYTHON checks the image side against Debian's PIL, scikit-image and OpenCV.
export const PYTHON = process.env.SOCO_PYTHON ?? '/usr/bin/python3';
export const SYSTEM_PYTHON = '/usr/bin/python3';
// TENSORBOARD_PYTHON reads TensorBoard event files with TensorBoard's own EventAccumulator: the
// virtualenv scripts/setup.sh makes outside the clone (SOCO_TENSORBOARD_PYTHON overrides).
export const TENSORBOARD_PYTHON = process.env.SOCO_TENSORBOARD_PYTHON
  ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'soco-train', 'tensorboard', 'bin', 'python');
