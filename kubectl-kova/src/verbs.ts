// The plugin's verbs: which InstanceAction each verb asks for, and the words it prints.
import type { ActionKind } from '@kova/crds';

export interface ActionVerb {
  action: ActionKind;
  /** Past participle for the result line: `instance/web-1 restarted`. */
  done: string;
  summary: string;
}

export const ACTION_VERBS = {
  start: { action: 'Start', done: 'started', summary: 'Power a stopped Instance on' },
  stop: {
    action: 'Stop',
    done: 'stopped',
    summary: 'Shut the guest down, powering it off after the shutdown timeout',
  },
  restart: {
    action: 'Reboot',
    done: 'restarted',
    summary: 'Reboot the guest, or with --hard reset it at once',
  },
  pause: { action: 'Pause', done: 'paused', summary: 'Freeze the guest in memory' },
  unpause: { action: 'Unpause', done: 'unpaused', summary: 'Let a paused guest run again' },
  rebuild: {
    action: 'Rebuild',
    done: 'rebuilt',
    summary: 'Replace the root disk with a fresh copy of the Image',
  },
} as const satisfies Record<string, ActionVerb>;

export type ActionVerbName = keyof typeof ACTION_VERBS;

export const isActionVerb = (word: string): word is ActionVerbName =>
  Object.hasOwn(ACTION_VERBS, word);

/** The console verbs: an action that opens a session on the node's console endpoint. */
export const SESSION_VERBS = {
  console: {
    action: 'Console',
    summary: "Attach to the guest's serial console (escape: Ctrl-])",
  },
  'console-log': {
    action: 'ConsoleLog',
    summary: 'Print what the guest wrote to its serial console',
  },
} as const satisfies Record<string, Omit<ActionVerb, 'done'>>;

export type SessionVerbName = keyof typeof SESSION_VERBS;

export const isSessionVerb = (word: string): word is SessionVerbName =>
  Object.hasOwn(SESSION_VERBS, word);
