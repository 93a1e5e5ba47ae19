// POST /v1/classify: a recorded file or the browser's own recording, classified in one go.
import { parseClassifyReply, ProtocolError } from "./protocol.js";

export class UploadError extends Error {
  constructor(message) {
    super(message);
    this.name = "UploadError";
  }
}

const STATUS_MESSAGES = {
  400: "The server could not read this file as audio.",
  401: "The server needs an access token. Open the link you were given (it ends in ?token=…).",
  413: "The file is too large or too long for the server.",
  415: "This file type is not supported. Try a WAV, FLAC or OGG file.",
  503: "The server is busy or starting up. Try again in a moment.",
};

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.error && typeof body.error.message === "string") return body.error.message;
  } catch {
    // not JSON: the status alone describes it
  }
  return "";
}

export async function classifyAudio(blob, filename, { url, token }) {
  const form = new FormData();
  form.append("file", blob, filename);
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  let response;
  try {
    response = await fetch(url, { method: "POST", body: form, headers });
  } catch (error) {
    throw new UploadError(`The server could not be reached (${error.message}).`);
  }
  if (!response.ok) {
    const detail = await errorText(response);
    const plain = STATUS_MESSAGES[response.status] ?? `The server answered with an error (HTTP ${response.status}).`;
    throw new UploadError(detail ? `${plain} (${detail})` : plain);
  }
  try {
    return parseClassifyReply(await response.json());
  } catch (error) {
    if (error instanceof ProtocolError || error instanceof SyntaxError) throw new UploadError(`The server's reply was malformed: ${error.message}`);
    throw error;
  }
}
