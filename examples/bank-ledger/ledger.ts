// A user state machine for flotilla: a bank ledger per group. Accounts, deposits and transfers;
// a transfer that would overdraw is rejected (the proposer gets StateMachineError) and changes
// nothing. flotilla loads this module by path inside every worker and creates one instance per
// group; it must be deterministic (no clocks, no randomness): every replica applies the same
// commands in the same order. The contract and its rules: docs/state-machines.md.
import type { UserStateMachine } from '../../src/index.js';

export type LedgerCommand =
  | { op: 'open'; account: string; balance: number }
  | { op: 'deposit'; account: string; amount: number }
  | { op: 'transfer'; from: string; to: string; amount: number };

export type LedgerQuery = { balance: string } | { total: true } | { accounts: true };

export class Ledger {
  private accounts = new Map<string, number>();

  apply(cmd: LedgerCommand): unknown {
    switch (cmd.op) {
      case 'open':
        if (this.accounts.has(cmd.account)) throw new Error(`account ${cmd.account} exists`);
        this.need(cmd.balance);
        this.accounts.set(cmd.account, cmd.balance);
        return { balance: cmd.balance };
      case 'deposit':
        this.need(cmd.amount);
        return { balance: this.add(cmd.account, cmd.amount) };
      case 'transfer': {
        this.need(cmd.amount);
        const from = this.balance(cmd.from);
        this.balance(cmd.to);
        if (from < cmd.amount) throw new Error(`insufficient funds in ${cmd.from}: ${from} < ${cmd.amount}`);
        this.add(cmd.from, -cmd.amount);
        return { from: this.balance(cmd.from), to: this.add(cmd.to, cmd.amount) };
      }
      default:
        throw new Error(`unknown op ${(cmd as { op: unknown }).op}`);
    }
  }

  query(q: LedgerQuery): unknown {
    if ('balance' in q) return this.accounts.get(q.balance) ?? null;
    if ('total' in q) return [...this.accounts.values()].reduce((a, b) => a + b, 0);
    return Object.fromEntries(this.accounts);
  }

  snapshot(): unknown {
    return [...this.accounts];
  }

  restore(state: unknown): void {
    this.accounts = new Map(state as [string, number][]);
  }

  private need(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`amount must be a non-negative integer, got ${n}`);
  }

  private balance(account: string): number {
    const b = this.accounts.get(account);
    if (b === undefined) throw new Error(`no account ${account}`);
    return b;
  }

  private add(account: string, n: number): number {
    const b = this.balance(account) + n;
    this.accounts.set(account, b);
    return b;
  }
}

/** What flotilla calls (once per group, in the worker that hosts it). */
export function createStateMachine(_group: number): UserStateMachine {
  const ledger = new Ledger();
  return {
    apply: (cmd: unknown) => ledger.apply(cmd as LedgerCommand),
    query: (q: unknown) => ledger.query(q as LedgerQuery),
    snapshot: () => ledger.snapshot(),
    restore: (s: unknown) => ledger.restore(s),
  };
}
