/** Errors thrown by the Conveyor client. Every one is a `ConveyorError`. */

/** The base of every error this package throws. */
export class ConveyorError extends Error {
  override name = "ConveyorError";
}

/**
 * Job arguments that Postgres's jsonb or Conveyor's codec would refuse, found before anything
 * is sent to the database. `path` names the value (`args.items[3].price`).
 */
export class PayloadError extends ConveyorError {
  override name = "PayloadError";
  constructor(
    message: string,
    /** Where the bad value is, e.g. `args.items[3].price`. */
    readonly path: string,
  ) {
    super(message);
  }
}

/** An enqueue option that `conveyor.enqueue` would refuse or that does not exist. */
export class EnqueueOptionError extends ConveyorError {
  override name = "EnqueueOptionError";
  constructor(
    message: string,
    /** The option at fault, e.g. `priority`. */
    readonly option: string,
  ) {
    super(message);
  }
}

/** Why a request is not an authentic, fresh Conveyor delivery. */
export type VerificationFailure =
  | "missing_header"
  | "bad_timestamp"
  | "timestamp_too_old"
  | "timestamp_too_new"
  | "bad_signature"
  | "bad_body";

/**
 * The request is not an authentic, fresh Conveyor delivery: answer 401 and do no work.
 * `reason` says which check failed; the message says more.
 */
export class DeliveryVerificationError extends ConveyorError {
  override name = "DeliveryVerificationError";
  constructor(
    readonly reason: VerificationFailure,
    message: string,
  ) {
    super(message);
  }
}
