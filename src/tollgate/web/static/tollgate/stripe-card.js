// Tollgate's Stripe pages: the card form (SetupIntent + Elements) and the payment confirmation.
// The card number is typed into Stripe's element and sent by Stripe.js to Stripe only.
(function () {
  "use strict";

  var form = document.getElementById("stripe-card-form");
  if (!form) {
    return;
  }
  var errors = document.getElementById("card-errors");
  var button = form.querySelector("button[type=submit]");

  function showError(message) {
    errors.textContent = message;
    errors.hidden = false;
    button.disabled = false;
  }

  if (typeof window.Stripe !== "function") {
    showError("The card form could not be loaded. Reload the page, or try again later.");
    button.disabled = true;
    return;
  }
  var stripe = window.Stripe(form.dataset.stripeKey);

  if (form.dataset.mode === "setup") {
    var card = stripe.elements().create("card");
    card.mount("#card-element");
    button.disabled = false;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      button.disabled = true;
      errors.hidden = true;
      stripe
        .confirmCardSetup(form.dataset.clientSecret, { payment_method: { card: card } })
        .then(function (result) {
          if (result.error) {
            showError(result.error.message || "Your card could not be saved. Try another card.");
            return;
          }
          window.location.assign(form.dataset.returnUrl);
        });
    });
    return;
  }

  button.disabled = false;
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    button.disabled = true;
    errors.hidden = true;
    var data = form.dataset.paymentMethod ? { payment_method: form.dataset.paymentMethod } : {};
    stripe.confirmCardPayment(form.dataset.clientSecret, data).then(function () {
      // Whatever happened, Tollgate asks Stripe for the outcome on the next page.
      window.location.assign(form.dataset.doneUrl);
    });
  });
})();
