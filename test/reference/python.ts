// The Pythons the references run with. PYTHON checks torch (ops, autograd, RoIAlign, serialization,
// the model): SOCO_PYTHON, a lane's own PyTorch (e.g. the torch 2.x virtualenv), else Debian's
// /usr/bin/python3 with python3-torch (the first python3 on PATH may have no torch).
// SYSTEM_PYTHON checks the image side against Debian's PIL, scikit-image and OpenCV.
export const PYTHON = process.env.SOCO_PYTHON ?? '/usr/bin/python3';
export const SYSTEM_PYTHON = '/usr/bin/python3';
