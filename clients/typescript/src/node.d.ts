// The little of Node's globals the walk uses (no @types/node dependency).
declare const process: {
  argv: string[];
  env: Record<string, string | undefined>;
  exitCode: number | undefined;
};
