// Option parsers shared by the commands, so every command checks a value the same way.
import { InvalidArgumentError } from 'commander';
import { DEVICE_CHOICES, isDeviceChoice } from '../torch/dtype';

export function positiveInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
    return n;
  };
}

/** --device's spelling, checked while parsing; whether the device exists is pickDevice's (lib/torch) to say. */
export function deviceOption(name: string) {
  return (v: string): string => {
    if (!isDeviceChoice(v)) throw new InvalidArgumentError(`${name} must be ${DEVICE_CHOICES}`);
    return v;
  };
}
