// The tutorial's page: ask for training, then poll the status every 500 ms and show each new
// one until "Model Trained!". The functions are called through the host's REST API.
const api = "/v1/apps/train-classifier/functions/train-classifier";
const TRAINED = "Model Trained!";
const waitFor = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function call(name, args) {
  const response = await fetch(`${api}.${name}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(args),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.message || response.statusText);
  return body;
}

function show(text, className = "status-message") {
  const line = document.createElement("p");
  line.className = className;
  line.textContent = text;
  document.getElementById("status-section").appendChild(line);
}

async function awaitStatus(id) {
  let last = "";
  while (last !== TRAINED && !last.startsWith("Training failed")) {
    await waitFor(500);
    const status = await call("status", { id });
    if (status !== last) {
      show(status);
      last = status;
    }
  }
}

async function trainModel() {
  const dataset = document.getElementById("dataset").value.trim();
  if (!dataset) {
    alert("A dataset must be given");
    return;
  }
  const button = document.getElementById("train");
  button.disabled = true;
  try {
    const id = await call("request-training", { dataset });
    show(`Training ${id} requested`, "status-id");
    await awaitStatus(id);
  } catch (error) {
    show(`Error: ${error.message}`, "status-error");
  } finally {
    button.disabled = false;
  }
}

document.getElementById("train").addEventListener("click", trainModel);
