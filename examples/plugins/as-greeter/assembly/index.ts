// An AssemblyScript plugin built with the SDK in sdk/assemblyscript (compiled by the set-up with asc).
import { config, INFO, inputString, log, outputString, setError } from '../../../../sdk/assemblyscript/index';

export function init(): i32 {
  log(INFO, 'as-greeter ready');
  return 0;
}

export function greet(): i32 {
  const name = inputString();
  if (name.length == 0) {
    setError('empty_name', 'give a name to greet');
    return 1;
  }
  const salutation = config('salutation');
  // config returns JSON text: a JSON string here, quotes included.
  const word = salutation == null ? 'Hello' : salutation.slice(1, salutation.length - 1);
  outputString(word + ', ' + name + '! (from AssemblyScript)');
  return 0;
}
