/**
 * `@conveyor/client`: enqueue Conveyor jobs from Node in your own transaction, and verify the
 * signed HTTP deliveries Conveyor POSTs to your routes (Standard Webhooks 1.0); start durable
 * workflow runs and send the events they wait for.
 */

export {
  type Delivery,
  type DeliveryBody,
  DEFAULT_TOLERANCE_SECONDS,
  deliveryBody,
  deliveryRequest,
  type SignOptions,
  signDelivery,
  type TestJob,
  type VerifyOptions,
  verifyDelivery,
} from "./delivery.js";
export {
  type EnqueueOptions,
  type JobSpec,
  type Queryable,
  type SqlTag,
  type SqlTemplate,
  enqueue,
  enqueueMany,
  enqueueSql,
  enqueueTemplate,
} from "./enqueue.js";
export {
  ConveyorError,
  DeliveryVerificationError,
  EnqueueOptionError,
  PayloadError,
  type VerificationFailure,
} from "./errors.js";
export {
  Cancel,
  type DeliveryHandlerOptions,
  deliveryHandler,
  FailNow,
  type HandlerResult,
  Retry,
} from "./handler.js";
export {
  ConveyorHttp,
  ConveyorHttpError,
  type ConveyorHttpOptions,
  type HttpJob,
  type Problem,
  type RequestOptions,
} from "./http.js";
export {
  DEFAULT_MAX_ARGS_BYTES,
  type EncodeArgsOptions,
  encodeArgs,
  encodeJson,
  type JsonObject,
  type JsonPrimitive,
  type JsonValue,
  MAX_NESTING,
} from "./json.js";
export type { DeliveryHeaders } from "./signature.js";
export {
  MAX_EVENT_PAYLOAD_BYTES,
  sendEvent,
  sendEventSql,
  sendEventTemplate,
  type StartWorkflowOptions,
  startWorkflow,
  startWorkflowSql,
  startWorkflowTemplate,
} from "./workflow.js";
